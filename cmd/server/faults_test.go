package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestStartsWhileDatabaseUnreachable starts the service while PostgreSQL
// refuses it. The process serves anyway: /healthz is 200, /readyz and every
// admin call answer 503 service_unavailable in the error shape (never 500),
// and the log says why and retries with growing delays. Once the database
// is reachable the service turns ready by itself and works.
func TestStartsWhileDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	proxy := newFaultProxy(t, dbURL, false)
	keyFile, keys := writeSigningKey(t)
	env := serverEnv(t, proxy.url(t, dbURL))
	env["SIGNING_KEY_FILE"] = keyFile
	in := start(t, env)
	t.Cleanup(testClient.CloseIdleConnections)

	if r := mustSend(t, in.base, "GET", "/healthz", "", ""); r.status != 200 {
		t.Errorf("/healthz: got %v, want 200", r)
	}
	// A ticket we signed for a token never stored: only the database could
	// refuse it, and the database is out of reach.
	now := time.Now()
	ticket, err := tokens.NewTicketer(keys, "signin-tokens", time.Now).Sign(tokens.Token{
		ID: tokens.KindSignIn.NewID(time.Now()), UserID: "user_1", CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	id := tokens.KindSignIn.NewID(time.Now())
	for _, c := range []struct{ method, path, key, body string }{
		{"GET", "/readyz", "", ""},
		{"POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_1"}`},
		{"GET", "/v1/sign_in_tokens/" + id, testSecretKey, ""},
		{"GET", "/v1/sign_in_tokens", testSecretKey, ""},
		{"POST", "/v1/sign_in_tokens/" + id + "/revoke", testSecretKey, ""},
		{"POST", "/v1/tickets/redeem", testSecretKey, ticketBody(ticket)},
	} {
		r := mustSend(t, in.base, c.method, c.path, c.key, c.body)
		checkError(t, c.method+" "+c.path, r, 503, tokens.CodeUnavailable)
	}

	// The log says why, and the delay between attempts grows.
	const retrying = "database unreachable; retrying"
	waitFor(t, 10*time.Second, "a second connection attempt", func() bool { return len(in.all(retrying)) >= 2 })
	attempts := in.all(retrying)
	for i, l := range attempts[:2] {
		if l["level"] != "warn" || l["attempt"] != float64(i+1) || !strings.Contains(fmt.Sprint(l["error"]), "connect to PostgreSQL") {
			t.Errorf("log line %d: got %v, want a warning for attempt %d that names the failed connection", i, l, i+1)
		}
	}
	first, _ := attempts[0]["retry_in"].(float64)
	second, _ := attempts[1]["retry_in"].(float64)
	if first <= 0 || second <= first {
		t.Errorf("retry_in: got %v then %v (ms), want a delay that grows", attempts[0]["retry_in"], attempts[1]["retry_in"])
	}
	if in.logged("database ready") != nil {
		t.Fatal("the log says the database is ready while it is unreachable")
	}

	proxy.resume()
	waitReady(t, in.base)
	// Written before the store opened; read from the log by another goroutine.
	waitFor(t, 5*time.Second, "the log to say the database is ready", func() bool { return in.logged("database ready") != nil })
	tok, err := createTicket(in.base, "user_1")
	if err != nil {
		t.Fatal(err)
	}
	if r := mustSend(t, in.base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tok.ticket)); r.status != 200 || r.body["status"] != "accepted" {
		t.Fatalf("redeem once the database is back: got %v, want 200 accepted", r)
	}
}

// TestDatabaseCutMidRequest cuts every database connection while a redeem
// or revoke is in flight, either before its UPDATE reaches PostgreSQL or
// after PostgreSQL committed it but before the service heard back. Either
// way the caller gets 503 service_unavailable with Retry-After, the stored
// token is entirely before or entirely after the change, /readyz reports
// the outage, and once the database is back the very next retry gets the
// coherent answer: success if the change was lost, "already done" if not.
func TestDatabaseCutMidRequest(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	proxy := newFaultProxy(t, dbURL, true)
	in := start(t, serverEnv(t, proxy.url(t, dbURL)))
	t.Cleanup(testClient.CloseIdleConnections)
	waitReady(t, in.base)
	db := connect(t, dbURL) // straight to the database, past the proxy

	tests := []struct {
		verb        string // redeem or revoke
		keyed       bool   // sent with an Idempotency-Key
		hold        holdKind
		stored      string // the token's status right after the cut
		retryStatus int
		retryCode   string
		final       string
	}{
		{"redeem", false, holdQuery, "pending", 200, "", "accepted"},
		{"redeem", false, holdAnswer, "accepted", 400, tokens.CodeAlreadyUsed, "accepted"},
		{"revoke", false, holdQuery, "pending", 200, "", "revoked"},
		{"revoke", false, holdAnswer, "revoked", 400, tokens.CodeCannotRevoke, "revoked"},
		// With a key, a retry after a committed change whose answer was
		// lost gets that change's 200.
		{"redeem", true, holdQuery, "pending", 200, "", "accepted"},
		{"redeem", true, holdAnswer, "accepted", 200, "", "accepted"},
		{"revoke", true, holdQuery, "pending", 200, "", "revoked"},
		{"revoke", true, holdAnswer, "revoked", 200, "", "revoked"},
	}
	for _, tt := range tests {
		name := tt.verb + " " + tt.hold.String() + " lost"
		if tt.keyed {
			name += ", with a key"
		}
		t.Run(name, func(t *testing.T) {
			tok, err := createTicket(in.base, "user_"+tt.verb)
			if err != nil {
				t.Fatal(err)
			}
			fillPool(t, in.base)
			var header []string
			if tt.keyed {
				header = []string{"Idempotency-Key", "retry-" + tok.id}
			}
			call := func() (reply, error) {
				if tt.verb == "redeem" {
					return send(in.base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tok.ticket), header...)
				}
				return send(in.base, "POST", "/v1/sign_in_tokens/"+tok.id+"/revoke", testSecretKey, "", header...)
			}

			r := cutWhileHeld(t, proxy, tok.id, tt.hold, call)
			checkError(t, "the cut request", r, 503, tokens.CodeUnavailable)
			if got := storedStatus(t, db, tok.id); got != tt.stored {
				t.Errorf("stored after the cut: got %s, want %s", got, tt.stored)
			}
			r, err = call()
			if err != nil {
				t.Fatal(err)
			}
			checkError(t, "a retry while the database is out of reach", r, 503, tokens.CodeUnavailable)
			checkError(t, "/readyz while the database is out of reach", mustSend(t, in.base, "GET", "/readyz", "", ""), 503, tokens.CodeUnavailable)

			proxy.resume()
			r, err = call()
			switch {
			case err != nil:
				t.Fatal(err)
			case tt.retryStatus == 200:
				if r.status != 200 || r.body["status"] != tt.final {
					t.Errorf("retry once the database is back: got %v, want 200 %s", r, tt.final)
				}
			default:
				checkError(t, "retry once the database is back", r, tt.retryStatus, tt.retryCode)
			}
			if got := storedStatus(t, db, tok.id); got != tt.final {
				t.Errorf("stored at the end: got %s, want %s", got, tt.final)
			}
			if tt.keyed {
				again, err := call()
				if err != nil {
					t.Fatal(err)
				}
				if again.status != 200 || string(again.raw) != string(r.raw) {
					t.Errorf("second retry with the key: got %v, want the first retry's 200 %s", again, r.raw)
				}
			}
		})
	}

	// A create under an Idempotency-Key is a transaction of two statements;
	// cut between them, it leaves nothing behind, and the retry creates the
	// token once.
	t.Run("idempotent create cut inside its transaction", func(t *testing.T) {
		key := "retry-" + tokens.KindSignIn.NewID(time.Now())
		call := func() (reply, error) {
			return send(in.base, "POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_idem"}`, "Idempotency-Key", key)
		}
		r := cutWhileHeld(t, proxy, key, holdQuery, call) // the key travels only in the second statement
		checkError(t, "the cut create", r, 503, tokens.CodeUnavailable)
		if n := countTokens(t, db, "user_idem"); n != 0 {
			t.Errorf("stored after the cut: %d tokens, want 0", n)
		}
		proxy.resume()
		first, err := call()
		if err != nil {
			t.Fatal(err)
		}
		again, err := call()
		if err != nil {
			t.Fatal(err)
		}
		if first.status != 200 || again.status != 200 || first.body["id"] != again.body["id"] {
			t.Errorf("retries once the database is back: got %v and %v, want 200 twice with one id", first, again)
		}
		if n := countTokens(t, db, "user_idem"); n != 1 {
			t.Errorf("stored at the end: %d tokens, want 1", n)
		}
	})
}

// cutWhileHeld sends call, waits until the proxy holds the query that
// carries pattern (or its answer), cuts every database connection, and
// returns the reply. The proxy refuses connections until resumed.
func cutWhileHeld(t *testing.T, proxy *faultProxy, pattern string, kind holdKind, call func() (reply, error)) reply {
	t.Helper()
	held := proxy.hold(pattern, kind)
	type result struct {
		r   reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := call()
		done <- result{r, err}
	}()
	select {
	case <-held:
	case res := <-done:
		t.Fatalf("answered before the proxy held its %s: %v %v", kind, res.r, res.err)
	case <-time.After(10 * time.Second):
		t.Fatalf("the proxy held no %s within 10s", kind)
	}
	if n := proxy.cut(); n == 0 {
		t.Fatal("cut no connection")
	}
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res.r
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s of the cut")
		return reply{}
	}
}

// fillPool has the service open several database connections at once, so
// its pool holds idle connections that a cut leaves dead.
func fillPool(t *testing.T, base string) {
	t.Helper()
	for i, r := range together(t, 8, func(int) (reply, error) {
		return send(base, "GET", "/v1/sign_in_tokens?limit=1", testSecretKey, "")
	}) {
		if r.status != 200 {
			t.Fatalf("list %d: got %v, want 200", i, r)
		}
	}
}

func storedStatus(t *testing.T, db *pgx.Conn, id string) string {
	t.Helper()
	var status string
	if err := db.QueryRow(context.Background(), `SELECT status FROM sign_in_tokens WHERE id = $1`, id).Scan(&status); err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return status
}

func countTokens(t *testing.T, db *pgx.Conn, userID string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM sign_in_tokens WHERE user_id = $1`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
