// Package tracing sets up OpenTelemetry's SDK from the standard OTEL_*
// environment variables: an OTLP exporter (HTTP/protobuf or gRPC), a batch
// span processor, a sampler and the service's resource. Without an endpoint
// tracing is off and no provider exists at all: the rest of the service then
// creates no spans.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// DefaultServiceName is service.name when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "signin-tokens"

// Settings is tracing's configuration, read from the OTEL_* variables.
type Settings struct {
	Enabled  bool
	Protocol string // grpc or http/protobuf
	// Endpoint is the full URL spans are sent to (for HTTP with /v1/traces).
	Endpoint    string
	Headers     map[string]string
	Sampler     sdktrace.Sampler
	SamplerName string // as configured, for the start-up log
	ServiceName string
	Resource    []attribute.KeyValue // OTEL_RESOURCE_ATTRIBUTES
	BatchDelay  time.Duration        // 0: the SDK's default
}

// Load reads the OTEL_* variables through getenv (the injected environment,
// so tests can run several services in one process). The errors name the
// variable. Tracing is on when an OTLP endpoint is set, unless
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none.
func Load(getenv func(string) string) (Settings, []string) {
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	var s Settings
	var errs []string
	fail := func(name, format string, args ...any) {
		errs = append(errs, name+": "+fmt.Sprintf(format, args...))
	}
	disabled := false
	if v := get("OTEL_SDK_DISABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fail("OTEL_SDK_DISABLED", "must be true or false, got %q", v)
		}
		disabled = b
	}
	switch v := strings.ToLower(get("OTEL_TRACES_EXPORTER")); v {
	case "", "otlp":
	case "none":
		disabled = true
	default:
		fail("OTEL_TRACES_EXPORTER", "must be otlp or none, got %q", v)
	}

	s.Protocol = strings.ToLower(get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if s.Protocol == "" {
		s.Protocol = strings.ToLower(get("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch s.Protocol {
	case "":
		s.Protocol = "http/protobuf"
	case "http/protobuf", "grpc":
	default:
		fail("OTEL_EXPORTER_OTLP_PROTOCOL", "must be http/protobuf or grpc, got %q", s.Protocol)
	}

	// The signal's own endpoint is used as it is; the generic one is a base
	// to which HTTP adds /v1/traces (the specification's rule).
	if v := get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		s.Endpoint = endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v, "", fail)
	} else if v := get("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		suffix := ""
		if s.Protocol == "http/protobuf" {
			suffix = "v1/traces"
		}
		s.Endpoint = endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", v, suffix, fail)
	}
	s.Enabled = s.Endpoint != "" && !disabled

	headers := get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
	name := "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
	if headers == "" {
		headers, name = get("OTEL_EXPORTER_OTLP_HEADERS"), "OTEL_EXPORTER_OTLP_HEADERS"
	}
	if kv, ok := pairs(headers); ok {
		s.Headers = kv
	} else {
		fail(name, "must be key=value pairs separated by commas") // the value may be a credential: not echoed
	}

	s.SamplerName = strings.ToLower(get("OTEL_TRACES_SAMPLER"))
	if s.SamplerName == "" {
		s.SamplerName = "parentbased_always_on"
	}
	ratio := 1.0
	if v := get("OTEL_TRACES_SAMPLER_ARG"); v != "" && strings.HasSuffix(s.SamplerName, "traceidratio") {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			fail("OTEL_TRACES_SAMPLER_ARG", "must be a ratio from 0 to 1, got %q", v)
		}
		ratio = r
	}
	switch s.SamplerName {
	case "always_on":
		s.Sampler = sdktrace.AlwaysSample()
	case "always_off":
		s.Sampler = sdktrace.NeverSample()
	case "traceidratio":
		s.Sampler = sdktrace.TraceIDRatioBased(ratio)
	case "parentbased_always_on":
		s.Sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		s.Sampler = sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		s.Sampler = sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	default:
		fail("OTEL_TRACES_SAMPLER", "must be always_on, always_off, traceidratio or parentbased_ one of those, got %q", s.SamplerName)
	}

	s.ServiceName = get("OTEL_SERVICE_NAME")
	if kv, ok := pairs(get("OTEL_RESOURCE_ATTRIBUTES")); ok {
		for k, v := range kv {
			if k == string(semconv.ServiceNameKey) && s.ServiceName == "" {
				s.ServiceName = v
			}
			s.Resource = append(s.Resource, attribute.String(k, v))
		}
	} else {
		fail("OTEL_RESOURCE_ATTRIBUTES", "must be key=value pairs separated by commas")
	}
	if s.ServiceName == "" {
		s.ServiceName = DefaultServiceName
	}

	if v := get("OTEL_BSP_SCHEDULE_DELAY"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 1 {
			fail("OTEL_BSP_SCHEDULE_DELAY", "must be a whole number of milliseconds, 1 or more, got %q", v)
		}
		s.BatchDelay = time.Duration(ms) * time.Millisecond
	}
	return s, errs
}

// endpoint checks an endpoint URL and joins suffix to its path.
func endpoint(name, v, suffix string, fail func(name, format string, args ...any)) string {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail(name, "must be an absolute http or https URL, got %q", v)
		return ""
	}
	if suffix != "" {
		u = u.JoinPath(suffix)
	}
	return u.String()
}

// pairs parses the specification's key=value,key=value lists, whose values
// are percent-encoded.
func pairs(v string) (map[string]string, bool) {
	if v == "" {
		return nil, true
	}
	out := map[string]string{}
	for _, p := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, false
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, false
		}
		out[k] = dec
	}
	return out, true
}

// Start builds the tracer provider for s: nil when tracing is off. Its
// Shutdown flushes the spans still queued and must be called at exit.
func Start(ctx context.Context, s Settings, version string) (*sdktrace.TracerProvider, error) {
	if !s.Enabled {
		return nil, nil
	}
	var exporter sdktrace.SpanExporter
	var err error
	if s.Protocol == "grpc" {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(s.Endpoint)}
		if len(s.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(s.Headers))
		}
		exporter, err = otlptracegrpc.New(ctx, opts...)
	} else {
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(s.Endpoint)}
		if len(s.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(s.Headers))
		}
		exporter, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	attrs := append([]attribute.KeyValue{}, s.Resource...)
	attrs = append(attrs, semconv.ServiceName(s.ServiceName), semconv.ServiceVersion(version))
	res, err := resource.New(ctx, resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	var bsp []sdktrace.BatchSpanProcessorOption
	if s.BatchDelay > 0 {
		bsp = append(bsp, sdktrace.WithBatchTimeout(s.BatchDelay))
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter, bsp...),
		sdktrace.WithSampler(s.Sampler),
		sdktrace.WithResource(res),
	), nil
}
