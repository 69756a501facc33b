package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestLogsCarryNoSecrets: one line per request with its trace id, route
// pattern and status, and neither keys nor tickets anywhere in the log.
func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	b := setup(t, func(o *options) { o.logs = logs })
	o := b.create(`{"user_id":"user_1"}`)
	ticket := o["token"].(string)
	b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, ticket))
	b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, ticket)) // already used
	b.do("GET", "/v1/sign_in_tokens?user_id=user_1", "", "Authorization", "Bearer sk_test_guessed_key_1234")
	r := b.do("POST", "/v1/sign_in_tokens/"+o["id"].(string)+"/revoke", "")

	text := logs.String()
	for _, secret := range []string{testKey, "sk_test_guessed_key_1234", ticket, strings.Split(ticket, ".")[2]} {
		if strings.Contains(text, secret) {
			t.Errorf("the log contains a secret (%.12s…)", secret)
		}
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 5 {
		t.Fatalf("log lines: got %d, want 5 (one per request):\n%s", len(lines), text)
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[4]), &last); err != nil {
		t.Fatal(err)
	}
	if last["trace_id"] != r.header.Get("Clerk-Trace-Id") || last["route"] != "/v1/sign_in_tokens/{id}/revoke" ||
		last["method"] != "POST" || last["status"] != float64(400) || last["duration_ms"] == nil {
		t.Errorf("request line: got %v", last)
	}
}

// TestRequestTimeout: a database that holds a request past the request
// timeout (here a row locked by another transaction) gives 503 in the error
// shape, and the token is left as it was.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	dbURL := postgresURL(t)
	b := setup(t, func(o *options) { o.dbURL, o.timeout = dbURL, 300*time.Millisecond })
	o := b.create(`{"user_id":"user_1"}`)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM sign_in_tokens WHERE id = $1 FOR UPDATE", o["id"]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, o["token"]))
	r.wantError(t, 503, "service_unavailable")
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("answered after %s, want about the 300ms timeout", elapsed)
	}
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.do("GET", "/v1/sign_in_tokens/"+o["id"].(string), ""); got.body["status"] != "pending" {
		t.Fatalf("after the timeout: status %v, want pending", got.body["status"])
	}
	if got := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, o["token"])); got.status != 200 {
		t.Errorf("redeem once the lock is gone: %d %s", got.status, got.raw)
	}
}

// TestPanicLogsItsStack: a handler that panics answers 500 in the error
// shape, and the log has the panic and its stack at error level, but not the
// request's body, headers or key.
func TestPanicLogsItsStack(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	api := apihttp.NewServer(apihttp.Config{
		SecretKeys: []string{testKey}, Logger: zerolog.New(logs),
		Extra: map[string]http.Handler{"/test/panic": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			panic("handler broke")
		})},
	})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	b := &bundle{t: t, srv: srv}
	const bodySecret, headerSecret = "body_secret_4242", "header_secret_4343"
	r := b.do("POST", "/test/panic", `{"ticket":"`+bodySecret+`"}`, "X-Custom", headerSecret)
	r.wantError(t, 500, "internal_clerk_error")

	text := logs.String()
	for _, secret := range []string{bodySecret, headerSecret, testKey} {
		if strings.Contains(text, secret) {
			t.Errorf("the log contains %q:\n%s", secret, text)
		}
	}
	var found map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if entry["message"] == "panic" {
			found = entry
		}
	}
	if found == nil {
		t.Fatalf("no panic line in the log:\n%s", text)
	}
	stack, _ := found["stack"].(string)
	if found["level"] != "error" || found["panic"] != "handler broke" || found["trace_id"] != r.header.Get("Clerk-Trace-Id") ||
		!strings.Contains(stack, "TestPanicLogsItsStack") {
		t.Errorf("panic line: got level %v, panic %v, trace_id %v, stack %.300q; want error, the panic value, the request's trace id and a stack through the handler",
			found["level"], found["panic"], found["trace_id"], stack)
	}
}

// switchableStore fails Get and Ping with ErrUnavailable while down is set.
type switchableStore struct {
	tokens.Store
	down *atomic.Bool
}

func (s switchableStore) Get(ctx context.Context, id string) (tokens.Token, error) {
	if s.down.Load() {
		return tokens.Token{}, fmt.Errorf("get: %w: dial tcp 10.1.2.3:5432: connection refused", tokens.ErrUnavailable)
	}
	return s.Store.Get(ctx, id)
}

func (s switchableStore) Ping(ctx context.Context) error {
	if s.down.Load() {
		return fmt.Errorf("probe writes: %w: read only", tokens.ErrUnavailable)
	}
	return s.Store.Ping(ctx)
}

// TestOneWarningPerOutage: while the database is down every request answers
// 503, but the log has one warning for the outage, not a line or two per
// request; the first success says it is over and how many requests failed.
func TestOneWarningPerOutage(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	var down atomic.Bool
	b := setup(t, func(o *options) {
		o.logs = logs
		o.wrap = func(st tokens.Store) tokens.Store { return switchableStore{st, &down} }
	})
	o := b.create(`{"user_id":"user_1"}`)
	path := "/v1/sign_in_tokens/" + o["id"].(string)
	levels := func() (warnings []map[string]any, recovered []map[string]any) {
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if entry["level"] == "warn" || entry["level"] == "error" {
				warnings = append(warnings, entry)
			}
			if entry["message"] == "the database is available again" {
				recovered = append(recovered, entry)
			}
		}
		return warnings, recovered
	}

	for round := 1; round <= 2; round++ {
		down.Store(true)
		for range 5 {
			b.do("GET", path, "").wantError(t, 503, "service_unavailable")
		}
		b.do("GET", "/readyz", "").wantError(t, 503, "service_unavailable")
		if warnings, _ := levels(); len(warnings) != round {
			t.Fatalf("round %d, 6 requests answered 503: got %d warning lines, want %d:\n%s", round, len(warnings), round, logs.String())
		}
		down.Store(false)
		if r := b.do("GET", path, ""); r.status != 200 {
			t.Fatalf("after recovery: got %d %s, want 200", r.status, r.raw)
		}
		b.do("GET", path, "")
		_, recovered := levels()
		if len(recovered) != round || recovered[round-1]["failed_requests"] != float64(6) {
			t.Fatalf("round %d: got recovery lines %v, want %d, the last with failed_requests 6", round, recovered, round)
		}
	}
}
