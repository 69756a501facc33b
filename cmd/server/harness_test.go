package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// testSecretKey is the admin key of every server these tests configure.
const testSecretKey = "sk_test_harness_0123456789abcdef"

// testClient keeps connections for reuse, so tests that send many
// requests at once do not run out of ports.
var testClient = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: 10 * time.Second},
}

// reply is one HTTP answer, its JSON body decoded.
type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

// code is the code of the first error in the body, or "".
func (r reply) code() string {
	errs, _ := r.body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	first, _ := errs[0].(map[string]any)
	code, _ := first["code"].(string)
	return code
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.raw) }

// send makes one request, with key as bearer unless it is empty and header
// given as name, value pairs. It is safe to call from any goroutine.
func send(base, method, path, key, body string, header ...string) (reply, error) {
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode, header: resp.Header}
	if r.raw, err = io.ReadAll(resp.Body); err != nil {
		return reply{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if len(r.raw) > 0 {
		if err := json.Unmarshal(r.raw, &r.body); err != nil {
			return reply{}, fmt.Errorf("%s %s: %w: %s", method, path, err, r.raw)
		}
	}
	return r, nil
}

// mustSend is send for the test's own goroutine: a failed exchange ends the test.
func mustSend(t *testing.T, base, method, path, key, body string, header ...string) reply {
	t.Helper()
	r, err := send(base, method, path, key, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ticketBody is a redeem request for ticket.
func ticketBody(ticket string) string { return fmt.Sprintf(`{"ticket":%q}`, ticket) }

// issued is a token as its create response shows it.
type issued struct{ id, ticket string }

// createTicket issues a ticket for userID through the server at base.
func createTicket(base, userID string) (issued, error) {
	r, err := send(base, "POST", "/v1/sign_in_tokens", testSecretKey, fmt.Sprintf(`{"user_id":%q}`, userID))
	if err != nil {
		return issued{}, err
	}
	id, _ := r.body["id"].(string)
	ticket, _ := r.body["token"].(string)
	if r.status != 200 || id == "" || ticket == "" {
		return issued{}, fmt.Errorf("create for %s: got %v, want 200 with id and token", userID, r)
	}
	return issued{id: id, ticket: ticket}, nil
}

// checkError reports unless r is an error answer in the contract's shape
// with the given status and code; a 503 must also say when to retry.
func checkError(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.code() != code {
		t.Errorf("%s: got %v, want %d %s", what, r, status, code)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	errs, _ := r.body["errors"].([]any)
	for _, e := range errs {
		item, _ := e.(map[string]any)
		for _, field := range []string{"message", "long_message", "code"} {
			if s, _ := item[field].(string); s == "" {
				t.Errorf("%s: error item without %s: %v", what, field, r)
			}
		}
	}
	if trace := r.header.Get("Clerk-Trace-Id"); trace == "" || r.body["clerk_trace_id"] != trace {
		t.Errorf("%s: clerk_trace_id %v, header %q: want the same, not empty", what, r.body["clerk_trace_id"], trace)
	}
	if status == http.StatusServiceUnavailable {
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s: Retry-After %q, want a whole number of seconds", what, r.header.Get("Retry-After"))
		}
	}
}

// waitFor polls cond until it holds, or ends the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady waits until the server at base answers /readyz with 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	waitFor(t, 20*time.Second, base+" ready", func() bool {
		r, err := send(base, "GET", "/readyz", "", "")
		return err == nil && r.status == 200
	})
}

// together runs call n times at once: every goroutine waits at one barrier
// and all are released together. It returns the replies in call order; an
// exchange that fails outright fails the test.
func together(t *testing.T, n int, call func(i int) (reply, error)) []reply {
	t.Helper()
	replies := make([]reply, n)
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-release
			r, err := call(i)
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
			replies[i] = r
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
	return replies
}

// serverEnv is the environment of a server on the database at dbURL with
// the test admin key and a signing key of its own.
func serverEnv(t *testing.T, dbURL string) map[string]string {
	return map[string]string{
		"DATABASE_URL": dbURL,
		"SECRET_KEYS":  testSecretKey,
		"DATA_DIR":     t.TempDir(),
	}
}

// startOnPostgres runs the program in-process on a schema of its own and
// waits until it is ready.
func startOnPostgres(t *testing.T) *instance {
	t.Helper()
	in := start(t, serverEnv(t, pgtest.URL(t)))
	// Runs before the stop start registered: a connection the client dialed
	// but never used would hold up the server's shutdown for 5 seconds.
	t.Cleanup(testClient.CloseIdleConnections)
	waitReady(t, in.base)
	return in
}

// writeSigningKey writes a new signing key as PEM and returns the file and key.
func writeSigningKey(t *testing.T) (string, *tokens.KeySet) {
	t.Helper()
	priv := tokens.GenerateKey()
	pem, err := tokens.EncodePEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "signing.pem")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := tokens.NewKeySet(priv)
	if err != nil {
		t.Fatal(err)
	}
	return path, keys
}

// connect opens a connection straight to the database for the test to look.
func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
