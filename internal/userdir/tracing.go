package userdir

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the directory's client spans.
const TracerName = "github.com/signin-tokens/signin-tokens/internal/userdir"

// Traced returns a copy of d whose lookups are HTTP client spans, children
// of the request's span, with the W3C traceparent sent to the directory so
// its own spans join the same trace.
func (d *Directory) Traced(tp trace.TracerProvider) *Directory {
	c := *d
	client := *d.client
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	client.Transport = &tracingTransport{base: base, tracer: tp.Tracer(TracerName)}
	c.client = &client
	return &c
}

// tracingTransport starts a client span per request and injects its context.
type tracingTransport struct {
	base   http.RoundTripper
	tracer trace.Tracer
}

// RoundTrip sends req in a span named by its method. url.full leaves out
// the query and any user info of the configured URL, which may hold a
// credential; the user id in the path is no secret.
func (t *tracingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := t.tracer.Start(req.Context(), req.Method, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() {
		u := *req.URL
		u.RawQuery, u.Fragment, u.User = "", "", nil
		span.SetAttributes(semconv.HTTPRequestMethodKey.String(req.Method), semconv.URLFull(u.String()),
			semconv.ServerAddress(req.URL.Hostname()))
		port, err := strconv.Atoi(req.URL.Port())
		if err != nil {
			port = map[string]int{"http": 80, "https": 443}[req.URL.Scheme]
		}
		span.SetAttributes(semconv.ServerPort(port))
	}
	req = req.Clone(ctx)
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeOther)
		span.SetStatus(codes.Error, "request failed")
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
	return resp, nil
}
