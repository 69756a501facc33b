package http

import (
	"context"
	"encoding/hex"
	"maps"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// requestState is what the middleware keeps of one request, in one
// allocation on its context: its trace id, its logger, the outage tracker,
// which secret key authenticated it and the status it answered. Only the
// request's own goroutine reads or writes it.
type requestState struct {
	traceID  string
	keyIndex int // see requireKey
	outage   *outage
	rec      statusRecorder
	base     zerolog.Logger
	log      zerolog.Logger // base with the trace id, made on first use
	hasLog   bool
}

type requestStateKey struct{}

// stateOf returns the request's state; nil outside observe.
func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(requestStateKey{}).(*requestState)
	return st
}

// traceID returns the request's trace id.
func traceID(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.traceID
	}
	return ""
}

// requestLog returns the request's logger, which carries its trace id.
// Made when first asked for: most requests log only their one line.
func requestLog(ctx context.Context) *zerolog.Logger {
	st := stateOf(ctx)
	if st == nil {
		return zerolog.Ctx(ctx)
	}
	if !st.hasLog {
		st.log, st.hasLog = st.base.With().Str("trace_id", st.traceID).Logger(), true
	}
	return &st.log
}

// newTraceID returns 16 random bytes in hex. Trace ids need to be unique, not
// secret, so the fast non-cryptographic generator is enough.
func newTraceID() string {
	var b [16]byte
	u1, u2 := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		b[i] = byte(u1 >> (8 * i))
		b[8+i] = byte(u2 >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// RequestObserver is told of every finished request: its route pattern,
// method, status and duration. Metrics hook in here.
type RequestObserver func(route, method string, status int, elapsed time.Duration)

// observe gives every request a trace id and a logger that carries it,
// recovers panics into a 500 (logging the stack), and logs one line per
// request. It never logs headers, bodies or query strings, so keys and
// tickets stay out of the log. With a tracer it also starts the request's
// server span, joined to the caller's trace by its traceparent header, and
// the trace id is the span's; without one no span code runs at all.
func observe(base zerolog.Logger, observer RequestObserver, tracer trace.Tracer, out *outage) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			var span trace.Span
			st := &requestState{outage: out, base: base}
			if tracer != nil {
				r, span = startServerSpan(tracer, r)
				st.traceID = span.SpanContext().TraceID().String()
			} else {
				st.traceID = newTraceID()
			}
			id := st.traceID
			r = r.WithContext(context.WithValue(r.Context(), requestStateKey{}, st))
			w.Header()["Clerk-Trace-Id"] = []string{id}
			st.rec.ResponseWriter = w
			rec := &st.rec
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						if span != nil {
							span.End()
						}
						panic(p)
					}
					// The stack says where it happened; the request's headers
					// and body stay out of the log, as everywhere.
					requestLog(r.Context()).Error().Interface("panic", p).Bool("response_began", rec.status != 0).
						Str("stack", string(debug.Stack())).Msg("panic")
					if rec.status == 0 {
						writeError(rec, r, errInternal)
					}
				}
				elapsed := time.Since(start)
				route := "unmatched"
				if p := routePattern(chi.RouteContext(r.Context())); p != "" {
					route = p
				}
				if rec.status == 0 {
					rec.status = http.StatusOK
				}
				if observer != nil {
					observer(route, r.Method, rec.status, elapsed)
				}
				if span != nil {
					endServerSpan(span, r.Method, route, rec.status)
				}
				lvl := zerolog.InfoLevel
				if rec.status >= 500 && rec.status != http.StatusServiceUnavailable {
					lvl = zerolog.WarnLevel // a 503's cause is logged once per outage (outage.go)
				}
				// The base logger with the trace id as the event's first field
				// writes what the request's logger would, without making it.
				base.WithLevel(lvl).Str("trace_id", id).Str("method", r.Method).Str("route", route).Int("status", rec.status).
					Dur("duration_ms", elapsed).Msg("request")
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// routePatterns maps the patterns chi matched, in order, to the route
// pattern they make. chi's RoutePattern builds it anew on every call; there
// are only as many as there are routes, so each is built once. The map is
// copied on write and never changed once stored.
var routePatterns atomic.Pointer[map[[4]string]string]

// routePattern is rctx.RoutePattern(), nil-safe, from routePatterns.
func routePattern(rctx *chi.Context) string {
	var key [4]string
	if rctx == nil || len(rctx.RoutePatterns) > len(key) {
		return rctx.RoutePattern()
	}
	copy(key[:], rctx.RoutePatterns)
	known := routePatterns.Load()
	if known != nil {
		if p, ok := (*known)[key]; ok {
			return p
		}
	}
	p := rctx.RoutePattern()
	for {
		next := make(map[[4]string]string, 1)
		if known != nil {
			maps.Copy(next, *known)
		}
		next[key] = p
		if routePatterns.CompareAndSwap(known, &next) {
			return p
		}
		known = routePatterns.Load()
	}
}

// collapseSlashes routes a path with repeated slashes as the path with single
// ones: Clerk's PHP SDK sends //sign_in_tokens and /v1//sign_in_tokens when
// its server URL ends in a slash. Only runs of slashes are collapsed (an
// encoded %2F is not a slash); the trailing slash is StripSlashes's business.
func collapseSlashes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "//") || strings.Contains(r.URL.RawPath, "//") {
			u := *r.URL
			u.Path, u.RawPath = collapse(u.Path), collapse(u.RawPath)
			r2 := *r
			r2.URL = &u
			r = &r2
		}
		next.ServeHTTP(w, r)
	})
}

// collapse replaces each run of slashes in p with one slash.
func collapse(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// limitBody caps every request body; reading past the cap fails, and the
// decoder turns that into 413.
func limitBody(max int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > max {
				writeError(w, r, errBodyTooLarge)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, max)
			next.ServeHTTP(w, r)
		})
	}
}
