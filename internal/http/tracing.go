package http

import (
	"net"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the service's spans.
const TracerName = "github.com/signin-tokens/signin-tokens"

// traceContext reads the W3C traceparent and tracestate headers.
var traceContext = propagation.TraceContext{}

// startServerSpan starts the request's server span as a child of the
// caller's span when the request carries a traceparent. Its name is the
// method until the router has matched a pattern. Attributes are built only
// for a span that records, so an unsampled request pays for none.
func startServerSpan(tracer trace.Tracer, r *http.Request) (*http.Request, trace.Span) {
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := tracer.Start(ctx, spanMethod(r.Method), trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(requestAttributes(r)...)
	}
	return r.WithContext(ctx), span
}

// requestAttributes are the semantic conventions' attributes of an HTTP
// server request. The path goes in without its query: the hosted page's
// query is the ticket (/sign-in?__clerk_ticket=...).
func requestAttributes(r *http.Request) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 8)
	method := spanMethod(r.Method)
	if method == "HTTP" {
		attrs = append(attrs, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(r.Method))
	} else {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs = append(attrs, semconv.URLPath(r.URL.Path), semconv.URLScheme(scheme))
	if host, port, err := net.SplitHostPort(r.Host); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	} else if r.Host != "" {
		attrs = append(attrs, semconv.ServerAddress(r.Host))
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, semconv.ClientAddress(host))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	return attrs
}

// endServerSpan names the span by its route pattern ("POST
// /v1/tickets/redeem"), records the status and ends it. A 5xx is an error of
// the server; a 4xx is the caller's, and leaves the span's status unset, as
// the conventions say for server spans.
func endServerSpan(span trace.Span, method, route string, status int) {
	if span.IsRecording() {
		name := spanMethod(method)
		if route != "unmatched" {
			name += " " + route
			span.SetAttributes(semconv.HTTPRoute(route))
		}
		span.SetName(name)
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
}

// spanMethod is the method as the conventions name it: one of the known
// methods, or HTTP for any other (which must not become a span name).
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "HTTP"
}
