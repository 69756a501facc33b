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

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
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

func (s *stubStore) Ping(context.Context) error { return nil }
func (s *stubStore) Close() error               { return nil }

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
// at info level to nowhere, as the server does minus the write.
func benchAPI(b *testing.B) (*apihttp.Server, *tokens.Service) {
	b.Helper()
	keys, err := tokens.NewKeySet(tokens.GenerateKey())
	if err != nil {
		b.Fatal(err)
	}
	svc := tokens.NewService(tokens.Config{
		Store: &stubStore{byID: map[string]tokens.Token{}}, Ticketer: tokens.NewTicketer(keys, testIssuer, time.Now),
		DefaultExpiresIn: 30 * 24 * time.Hour, MaxExpiresIn: 365 * 24 * time.Hour,
	})
	api := apihttp.NewServer(apihttp.Config{Service: svc, SecretKeys: []string{testKey},
		Logger: zerolog.New(io.Discard).Level(zerolog.InfoLevel)})
	return api, svc
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

func BenchmarkRouterCreate(b *testing.B) {
	api, _ := benchAPI(b)
	serveBench(b, api, "/v1/sign_in_tokens", `{"user_id":"user_2pQxBenchmark"}`)
}

func BenchmarkRouterRedeem(b *testing.B) {
	api, svc := benchAPI(b)
	created, err := svc.Create(context.Background(), tokens.CreateParams{UserID: "user_2pQxBenchmark"})
	if err != nil {
		b.Fatal(err)
	}
	serveBench(b, api, "/v1/tickets/redeem", `{"ticket":"`+created.Ticket+`"}`)
}
