package http_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/store"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// stubStore is an in-memory tokens.Store for benchmarks. Redeem never
// changes what is stored, so one ticket can be redeemed on every iteration
// and the benchmark measures everything but the database.
type stubStore struct {
	mu   sync.Mutex
	byID map[string]tokens.Token
}

func (s *stubStore) Create(_ context.Context, c tokens.Creation) (tokens.CreateResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[c.Token.ID] = c.Token
	return tokens.CreateResult{Token: c.Token, Created: true}, nil
}

func (s *stubStore) RevokeUser(context.Context, tokens.Kind, string, time.Time) ([]tokens.Token, error) {
	return nil, nil
}

func (s *stubStore) RedeemCode(context.Context, tokens.CodeRedemption) (tokens.Token, tokens.CodeOutcome, error) {
	return tokens.Token{}, tokens.CodeNoneLeft, nil
}

func (s *stubStore) Get(_ context.Context, id string) (tokens.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byID[id]
	if !ok {
		return tokens.Token{}, tokens.ErrNotFound
	}
	return t, nil
}

func (s *stubStore) List(context.Context, tokens.ListFilter) ([]tokens.Token, int, error) {
	return nil, 0, nil
}

func (s *stubStore) Revoke(ctx context.Context, id string, now time.Time, _ *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	t, err := s.Get(ctx, id)
	if err != nil {
		return t, tokens.Unchanged, err
	}
	t.Status, t.RevokedAt, t.UpdatedAt = tokens.StatusRevoked, &now, now
	return t, tokens.Changed, nil
}

func (s *stubStore) Redeem(ctx context.Context, id string, hash []byte, now time.Time, _ *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	t, err := s.Get(ctx, id)
	if err != nil || string(t.TicketHash) != string(hash) {
		return t, tokens.Unchanged, err
	}
	t.Status, t.AcceptedAt, t.UpdatedAt = tokens.StatusAccepted, &now, now
	return t, tokens.Changed, nil
}

func (s *stubStore) DeleteFinished(context.Context, time.Time, int) (int, error) { return 0, nil }
func (s *stubStore) DeleteIdempotencyKeys(context.Context, time.Time, int) (int, error) {
	return 0, nil
}

func (s *stubStore) AppendEvent(context.Context, tokens.Event) error { return nil }
func (s *stubStore) ListEvents(context.Context, tokens.EventFilter) ([]tokens.Event, bool, error) {
	return nil, false, nil
}
func (s *stubStore) DeleteEvents(context.Context, time.Time, int) (int, error) { return 0, nil }
func (s *stubStore) Ping(context.Context) error                                { return nil }
func (s *stubStore) Close() error                                              { return nil }

// discardWriter is a ResponseWriter that keeps only the status, so the
// benchmark counts the server's allocations, not a recorder's.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// benchAPI is the real router, service and ticketer on a stubStore, logging
// at info level to nowhere, as the server does minus the write. With tp, it
// is traced as serve traces it: server spans, the store decorator's spans
// and ticket spans.
func benchAPI(b *testing.B, tp ...trace.TracerProvider) (*apihttp.Server, *tokens.Service) {
	b.Helper()
	keys, err := tokens.NewKeySet(tokens.GenerateKey())
	if err != nil {
		b.Fatal(err)
	}
	var st tokens.Store = &stubStore{byID: map[string]tokens.Token{}}
	var provider trace.TracerProvider
	var tracer trace.Tracer
	if len(tp) > 0 {
		provider = tp[0]
		st, tracer = store.NewTraced(st, store.Postgres, provider), provider.Tracer(apihttp.TracerName)
	}
	svc := tokens.NewService(tokens.Config{
		Store: st, Ticketer: tokens.NewTicketer(keys, testIssuer, time.Now), Tracer: tracer,
		DefaultExpiresIn: 30 * 24 * time.Hour, MaxExpiresIn: 365 * 24 * time.Hour,
	})
	api := apihttp.NewServer(apihttp.Config{Service: svc, SecretKeys: []string{testKey},
		Logger: zerolog.New(io.Discard).Level(zerolog.InfoLevel), TracerProvider: provider})
	return api, svc
}

// discardExporter takes spans and drops them: the benchmarks measure making
// and batching spans, not sending them.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// tracedCases are the samplers the traced benchmarks run with, on the SDK
// with its batch span processor, as serve sets it up.
var tracedCases = []struct {
	name    string
	sampler sdktrace.Sampler
}{
	{"always_on", sdktrace.AlwaysSample()},
	{"parentbased_traceidratio_0.1", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))},
}

// benchTraced runs bench under each sampler of tracedCases.
func benchTraced(b *testing.B, bench func(b *testing.B, tp trace.TracerProvider)) {
	for _, c := range tracedCases {
		b.Run(c.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(c.sampler), sdktrace.WithBatcher(discardExporter{}))
			b.Cleanup(func() { tp.Shutdown(context.Background()) })
			bench(b, tp)
		})
	}
}

// serveBench sends the same request through the router on every iteration.
func serveBench(b *testing.B, api http.Handler, path, body string) {
	b.Helper()
	req, err := http.NewRequest(http.MethodPost, path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	w := &discardWriter{header: http.Header{}}
	rd := strings.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body, req.ContentLength = io.NopCloser(rd), int64(len(body))
		clear(w.header)
		w.status = 0
		api.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkRouterCreate is a create with tracing off, as serve runs without
// an OTLP endpoint: no tracer provider at all.
func BenchmarkRouterCreate(b *testing.B) {
	api, _ := benchAPI(b)
	serveBench(b, api, "/v1/sign_in_tokens", `{"user_id":"user_2pQxBenchmark"}`)
}

// BenchmarkRouterRedeem is a redeem with tracing off.
func BenchmarkRouterRedeem(b *testing.B) {
	benchRedeem(b)
}

func benchRedeem(b *testing.B, tp ...trace.TracerProvider) {
	api, svc := benchAPI(b, tp...)
	created, err := svc.Create(context.Background(), tokens.CreateParams{UserID: "user_2pQxBenchmark"})
	if err != nil {
		b.Fatal(err)
	}
	serveBench(b, api, "/v1/tickets/redeem", `{"ticket":"`+created.Ticket+`"}`)
}

// BenchmarkRouterCreateTraced is BenchmarkRouterCreate with tracing on.
func BenchmarkRouterCreateTraced(b *testing.B) {
	benchTraced(b, func(b *testing.B, tp trace.TracerProvider) {
		api, _ := benchAPI(b, tp)
		serveBench(b, api, "/v1/sign_in_tokens", `{"user_id":"user_2pQxBenchmark"}`)
	})
}

// BenchmarkRouterRedeemTraced is BenchmarkRouterRedeem with tracing on.
func BenchmarkRouterRedeemTraced(b *testing.B) {
	benchTraced(b, func(b *testing.B, tp trace.TracerProvider) { benchRedeem(b, tp) })
}
