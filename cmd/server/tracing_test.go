package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
)

// otlpReceiver is a collector's OTLP/HTTP protobuf endpoint: it decodes
// every ExportTraceServiceRequest posted to /v1/traces and keeps its spans
// and its raw bytes.
type otlpReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
	raw      [][]byte
	spans    []*tracepb.Span
	service  string // service.name of the last resource
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rc := &otlpReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || err != nil {
			t.Errorf("receiver: %s %s (%v); want POST /v1/traces", r.Method, r.URL.Path, err)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			t.Errorf("receiver: Content-Type %q, want application/x-protobuf", ct)
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			t.Errorf("receiver: decode: %v", err)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.requests++
		rc.raw = append(rc.raw, body)
		for _, rs := range req.ResourceSpans {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					rc.service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				rc.spans = append(rc.spans, ss.Spans...)
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// snapshot returns the spans received so far and how many requests brought them.
func (rc *otlpReceiver) snapshot() ([]*tracepb.Span, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*tracepb.Span(nil), rc.spans...), rc.requests
}

// tracingEnv points a server's exporter at rc, flushing every 20 ms.
func tracingEnv(env map[string]string, rc *otlpReceiver) map[string]string {
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = rc.URL
	env["OTEL_BSP_SCHEDULE_DELAY"] = "20"
	env["OTEL_SERVICE_NAME"] = "signin-tokens-test"
	env["OTEL_TRACES_SAMPLER"] = "parentbased_always_on"
	return env
}

// spanTree indexes received spans.
type spanTree struct{ spans []*tracepb.Span }

func (st spanTree) byTrace(traceID string) []*tracepb.Span {
	var out []*tracepb.Span
	for _, s := range st.spans {
		if hex.EncodeToString(s.TraceId) == traceID {
			out = append(out, s)
		}
	}
	return out
}

// one returns the only span named name among spans, or fails.
func one(t *testing.T, spans []*tracepb.Span, name string) *tracepb.Span {
	t.Helper()
	var found []*tracepb.Span
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("spans named %q: got %d, want 1 (spans: %s)", name, len(found), names(spans))
	}
	return found[0]
}

func names(spans []*tracepb.Span) string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

func attr(s *tracepb.Span, key string) *commonpb.AnyValue {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value
		}
	}
	return nil
}

func wantAttr(t *testing.T, s *tracepb.Span, key, want string) {
	t.Helper()
	v := attr(s, key)
	got := ""
	if v != nil {
		got = v.GetStringValue()
		if got == "" {
			got = fmt.Sprint(v.GetIntValue())
		}
	}
	if got != want {
		t.Errorf("span %q: %s = %q, want %q", s.Name, key, got, want)
	}
}

func wantChild(t *testing.T, child, parent *tracepb.Span) {
	t.Helper()
	if !bytes.Equal(child.ParentSpanId, parent.SpanId) || !bytes.Equal(child.TraceId, parent.TraceId) {
		t.Errorf("span %q: parent %x in trace %x, want %q (%x in %x)", child.Name, child.ParentSpanId, child.TraceId,
			parent.Name, parent.SpanId, parent.TraceId)
	}
}

// traceparent is a caller's W3C header for a new trace, sampled.
func traceparent(i int) (header, traceID, spanID string) {
	traceID = fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04x", i)
	spanID = fmt.Sprintf("00f067aa0ba9%04x", i)
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// TestTracing runs the service on PostgreSQL with its exporter pointed at a
// receiver in the test, sends a create and a redeem that carry a caller's
// traceparent, and checks the span trees that arrive, the ids the answers
// carry, the traceparent the user directory gets, and that neither the
// ticket nor the secret key is in any exported byte.
func TestTracing(t *testing.T) {
	t.Parallel()
	rc := newOTLPReceiver(t)
	var dirMu sync.Mutex
	var dirTraceparent string
	directory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/users/user_traced" {
			dirMu.Lock()
			dirTraceparent = r.Header.Get("Traceparent")
			dirMu.Unlock()
		}
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(directory.Close)
	env := tracingEnv(serverEnv(t, pgtest.URL(t)), rc)
	env["USER_LOOKUP_URL"] = directory.URL + "/users/{user_id}"
	env["PUBLIC_URL"] = "http://tokens.example.com"
	env["SIGN_IN_URL"] = "https://app.example.com/sign-in"
	env["DATABASE_WRITERS"] = "1"
	in := start(t, env)
	t.Cleanup(testClient.CloseIdleConnections)
	waitReady(t, in.base)

	createTP, createTrace, createCaller := traceparent(1)
	created := mustSend(t, in.base, "POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_traced"}`,
		"Traceparent", createTP)
	ticket, _ := created.body["token"].(string)
	if created.status != 200 || ticket == "" {
		t.Fatalf("create: %v", created)
	}
	if got := created.header.Get("Clerk-Trace-Id"); got != createTrace {
		t.Errorf("create: Clerk-Trace-Id %q, want the caller's trace id %q", got, createTrace)
	}
	redeemTP, redeemTrace, redeemCaller := traceparent(2)
	if r := mustSend(t, in.base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(ticket), "Traceparent", redeemTP); r.status != 200 {
		t.Fatalf("redeem: %v", r)
	}
	errTP, errTrace, _ := traceparent(3)
	again := mustSend(t, in.base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(ticket), "Traceparent", errTP)
	if got, _ := again.body["clerk_trace_id"].(string); again.status != 400 || got != errTrace {
		t.Errorf("second redeem: got %d with clerk_trace_id %q, want 400 with %q", again.status, got, errTrace)
	}
	eventsTP, eventsTrace, _ := traceparent(4)
	if r := mustSend(t, in.base, "GET", "/v1/events?limit=5", testSecretKey, "", "Traceparent", eventsTP); r.status != 200 {
		t.Fatalf("events: %v", r)
	}
	page, err := testClient.Get(in.base + "/sign-in?__clerk_ticket=" + ticket)
	if err != nil {
		t.Fatalf("sign-in page: %v", err)
	}
	io.Copy(io.Discard, page.Body)
	page.Body.Close()
	// A burst of creates on one writer: those that queue behind it go out
	// as one group, whose span links each of their spans.
	burst := together(t, 24, func(i int) (reply, error) {
		tp, _, _ := traceparent(100 + i)
		return send(in.base, "POST", "/v1/sign_in_tokens", testSecretKey, fmt.Sprintf(`{"user_id":"user_burst_%d"}`, i), "Traceparent", tp)
	})
	for _, r := range burst {
		if r.status != 200 {
			t.Fatalf("burst create: %v", r)
		}
	}
	if err := in.stop(); err != nil { // flushes what is still queued
		t.Fatalf("stop: %v", err)
	}

	spans, requests := rc.snapshot()
	if requests == 0 {
		t.Fatal("the receiver got no export")
	}
	tree := spanTree{spans}
	rc.mu.Lock()
	if rc.service != "signin-tokens-test" {
		t.Errorf("service.name %q, want OTEL_SERVICE_NAME's signin-tokens-test", rc.service)
	}
	for _, raw := range rc.raw {
		for what, secret := range map[string]string{"ticket": ticket, "secret key": testSecretKey} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("an export contains the %s", what)
			}
		}
	}
	rc.mu.Unlock()

	// The create: server span under the caller's, with the ticket's
	// signing, the store's create and the directory's lookup under it.
	create := tree.byTrace(createTrace)
	server := one(t, create, "POST /v1/sign_in_tokens")
	if hex.EncodeToString(server.ParentSpanId) != createCaller || server.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("create server span: parent %x kind %v, want the caller's %s, SERVER", server.ParentSpanId, server.Kind, createCaller)
	}
	wantAttr(t, server, "http.route", "/v1/sign_in_tokens")
	wantAttr(t, server, "http.request.method", "POST")
	wantAttr(t, server, "url.path", "/v1/sign_in_tokens")
	wantAttr(t, server, "http.response.status_code", "200")
	wantChild(t, one(t, create, "ticket.sign"), server)
	store := one(t, create, "create sign_in_tokens")
	wantChild(t, store, server)
	wantAttr(t, store, "db.system.name", "postgresql")
	wantAttr(t, store, "db.operation.name", "create")
	wantAttr(t, store, "db.collection.name", "sign_in_tokens")
	lookup := one(t, create, "GET")
	wantChild(t, lookup, server)
	if lookup.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("directory span kind %v, want CLIENT", lookup.Kind)
	}
	dirMu.Lock()
	wantDir := "00-" + createTrace + "-" + hex.EncodeToString(lookup.SpanId) + "-01"
	if dirTraceparent != wantDir {
		t.Errorf("the directory got traceparent %q, want %q", dirTraceparent, wantDir)
	}
	dirMu.Unlock()

	// The redeem: verification and the store's redeem under the server span.
	redeem := tree.byTrace(redeemTrace)
	server = one(t, redeem, "POST /v1/tickets/redeem")
	if hex.EncodeToString(server.ParentSpanId) != redeemCaller {
		t.Errorf("redeem server span: parent %x, want the caller's %s", server.ParentSpanId, redeemCaller)
	}
	wantChild(t, one(t, redeem, "ticket.verify"), server)
	store = one(t, redeem, "redeem sign_in_tokens")
	wantChild(t, store, server)
	wantAttr(t, store, "db.operation.name", "redeem")
	// A refused redeem is the caller's error: the server span is no error.
	// The refusal's event is appended in a span of its own.
	server = one(t, tree.byTrace(errTrace), "POST /v1/tickets/redeem")
	if server.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("a 400 redeem's server span has status %v, want unset", server.Status)
	}
	appended := one(t, tree.byTrace(errTrace), "append events")
	wantChild(t, appended, server)
	wantAttr(t, appended, "db.operation.name", "append")
	wantAttr(t, appended, "db.collection.name", "events")
	// Reading the audit trail.
	server = one(t, tree.byTrace(eventsTrace), "GET /v1/events")
	listed := one(t, tree.byTrace(eventsTrace), "list events")
	wantChild(t, listed, server)
	wantAttr(t, listed, "db.system.name", "postgresql")
	wantAttr(t, listed, "db.operation.name", "list")

	// The hosted page: its path, never its query.
	var pageSpan *tracepb.Span
	for _, s := range spans {
		if s.Name == "GET /sign-in" {
			pageSpan = s
		}
	}
	if pageSpan == nil {
		t.Fatalf("no span for the sign-in page; spans: %s", names(spans))
	}
	wantAttr(t, pageSpan, "url.path", "/sign-in")

	// The group: one span started by the writer, linked to the store span of
	// every write it carried, the child of the first of them.
	storeSpans := map[string]*tracepb.Span{}
	for _, s := range spans {
		if s.Name == "create sign_in_tokens" {
			storeSpans[hex.EncodeToString(s.SpanId)] = s
		}
	}
	groups := 0
	for _, g := range spans {
		if g.Name != "BATCH create sign_in_tokens" {
			continue
		}
		groups++
		wantAttr(t, g, "db.system.name", "postgresql")
		wantAttr(t, g, "db.operation.batch.size", fmt.Sprint(len(g.Links)))
		if len(g.Links) < 2 {
			t.Errorf("group span with %d links, want one per write, 2 or more", len(g.Links))
		}
		for _, l := range g.Links {
			s, ok := storeSpans[hex.EncodeToString(l.SpanId)]
			if !ok || !bytes.Equal(s.TraceId, l.TraceId) {
				t.Errorf("group link %x/%x is no create's store span", l.TraceId, l.SpanId)
			}
		}
		if !bytes.Equal(g.ParentSpanId, g.Links[0].SpanId) || !bytes.Equal(g.TraceId, g.Links[0].TraceId) {
			t.Errorf("group span: parent %x, want its first write's span %x", g.ParentSpanId, g.Links[0].SpanId)
		}
	}
	if groups == 0 {
		t.Errorf("24 creates at once on one writer made no group span; spans: %d", len(spans))
	}
}

// TestTracingOff checks that a disabled SDK and a missing endpoint export
// nothing, and that trace ids are then today's: random, whatever the
// caller's traceparent says.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	hexID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tc := range []struct {
		name string
		env  func(rc *otlpReceiver) map[string]string
	}{
		{"OTEL_SDK_DISABLED", func(rc *otlpReceiver) map[string]string {
			env := tracingEnv(map[string]string{}, rc)
			env["OTEL_SDK_DISABLED"] = "true"
			return env
		}},
		{"OTEL_TRACES_EXPORTER=none", func(rc *otlpReceiver) map[string]string {
			env := tracingEnv(map[string]string{}, rc)
			env["OTEL_TRACES_EXPORTER"] = "none"
			return env
		}},
		{"no endpoint", func(rc *otlpReceiver) map[string]string {
			env := tracingEnv(map[string]string{}, rc)
			delete(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
			return env
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := newOTLPReceiver(t)
			env := tc.env(rc)
			env["SECRET_KEYS"], env["DATA_DIR"] = testSecretKey, t.TempDir()
			in := start(t, env)
			tp, callerTrace, _ := traceparent(7)
			r := mustSend(t, in.base, "POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_off"}`, "Traceparent", tp)
			if r.status != 200 {
				t.Fatalf("create: %v", r)
			}
			if id := r.header.Get("Clerk-Trace-Id"); !hexID.MatchString(id) || id == callerTrace {
				t.Errorf("Clerk-Trace-Id %q, want 32 random hex digits, not the caller's trace id", id)
			}
			if in.logged("tracing on") != nil {
				t.Error(`the log says "tracing on"`)
			}
			if err := in.stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			time.Sleep(100 * time.Millisecond) // five schedule delays: an export would have come
			if _, requests := rc.snapshot(); requests != 0 {
				t.Errorf("the receiver got %d exports, want none", requests)
			}
		})
	}
}
