package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// testWebhookSecret signs the deliveries of these tests.
const testWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a webhook endpoint written from the Standard Webhooks
// specification alone, not from the service's signing code: it checks
// each delivery's signature and timestamp, and records what it got.
type receiver struct {
	t      *testing.T
	key    []byte
	addr   string // host:port, kept across down and up
	server *http.Server

	mu        sync.Mutex
	attempts  map[string]int    // by webhook-id
	bodies    map[string][]byte // the first body of each webhook-id
	acked     map[string]bool
	problems  []string
	failFirst int           // answer 500 to the first failFirst attempts of each id
	holding   bool          // hold every request open, unanswered
	held      chan struct{} // closed when a request is first held
	heldOnce  sync.Once
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(testWebhookSecret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, key: key, attempts: map[string]int{}, bodies: map[string][]byte{},
		acked: map[string]bool{}, held: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) serve(ln net.Listener) {
	r.server = &http.Server{Handler: http.HandlerFunc(r.handle)}
	go r.server.Serve(ln)
}

// down closes the port: deliveries find the connection refused.
func (r *receiver) down() {
	r.mu.Lock()
	srv := r.server
	r.server = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up listens again on the same port.
func (r *receiver) up() {
	r.t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("receiver up again on %s: %v", r.addr, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serve(ln)
}

// verify checks a delivery as the specification tells a receiver to: the
// HMAC-SHA256 of "id.timestamp.body" under the secret, base64, among the
// space-separated "v1," signatures, compared in constant time; and a
// timestamp within five minutes of now.
func (r *receiver) verify(h http.Header, body []byte) error {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if id == "" || ts == "" {
		return errors.New("no webhook-id or webhook-timestamp")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %v", ts, err)
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp %s is %s off", ts, d)
	}
	mac := hmac.New(sha256.New, r.key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if v, ok := strings.CutPrefix(sig, "v1,"); ok && hmac.Equal([]byte(v), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("no valid signature in %q", h.Get("webhook-signature"))
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	id := req.Header.Get("webhook-id")
	var ev struct {
		Object, ID string
	}
	problem := r.verify(req.Header, body)
	if problem == nil && (json.Unmarshal(body, &ev) != nil || ev.Object != "event" || ev.ID != id) {
		problem = fmt.Errorf("body %s is not the event %s", body, id)
	}
	r.mu.Lock()
	if problem != nil {
		r.problems = append(r.problems, problem.Error())
	}
	r.attempts[id]++
	attempt := r.attempts[id]
	if first, ok := r.bodies[id]; !ok {
		r.bodies[id] = body
	} else if string(first) != string(body) {
		r.problems = append(r.problems, fmt.Sprintf("%s: body changed between attempts: %s then %s", id, first, body))
	}
	holding, failing := r.holding, attempt <= r.failFirst
	r.mu.Unlock()
	switch {
	case holding:
		r.heldOnce.Do(func() { close(r.held) })
		<-req.Context().Done() // until the sender goes away
		return
	case problem != nil || failing:
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	r.mu.Lock()
	r.acked[id] = true
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// set changes the receiver's behaviour.
func (r *receiver) set(failFirst int, holding bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failFirst, r.holding = failFirst, holding
}

// ackedIDs are the webhook-ids acknowledged, sorted.
func (r *receiver) ackedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id := range r.acked {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// check reports every delivery that failed verification, and returns the
// attempts by id.
func (r *receiver) check(t *testing.T, name string) map[string]int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		t.Errorf("receiver %s: %s", name, p)
	}
	return copyCounts(r.attempts)
}

func copyCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// webhookStore is a database for a webhook test and how to read the ids
// of its events rows straight from it.
type webhookStore struct {
	name     string
	url      string
	eventIDs func(t *testing.T) []string
}

// webhookStores are both stores, each on a database of its own. River
// names its channels after the schema, which pgtest names after the test:
// keep the tests' names short.
func webhookStores(t *testing.T) []func(t *testing.T) webhookStore {
	return []func(t *testing.T) webhookStore{
		func(t *testing.T) webhookStore {
			schemaURL := pgtest.URL(t)
			db := connect(t, schemaURL)
			url := pgtest.WithParam(t, schemaURL, "pool_max_conns", "4")
			return webhookStore{name: "postgres", url: url, eventIDs: func(t *testing.T) []string {
				rows, err := db.Query(context.Background(), "SELECT xid, seq FROM events")
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var ids []string
				for rows.Next() {
					var xid, seq int64
					if err := rows.Scan(&xid, &seq); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, tokens.NewEventID(uint64(xid), uint64(seq)))
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				slices.Sort(ids)
				return ids
			}}
		},
		func(t *testing.T) webhookStore {
			path := filepath.Join(t.TempDir(), "tokens.db")
			return webhookStore{name: "sqlite", url: "sqlite:" + path, eventIDs: func(t *testing.T) []string {
				db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				rows, err := db.Query("SELECT seq FROM events")
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var ids []string
				for rows.Next() {
					var seq int64
					if err := rows.Scan(&seq); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, tokens.NewEventID(0, uint64(seq)))
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				slices.Sort(ids)
				return ids
			}}
		},
	}
}

// webhookEnv is a server's environment delivering to urls, retrying fast.
func webhookEnv(t *testing.T, dbURL string, timeout string, urls ...string) map[string]string {
	env := serverEnv(t, dbURL)
	env["WEBHOOK_URLS"] = strings.Join(urls, ",")
	env["WEBHOOK_SECRET"] = testWebhookSecret
	env["WEBHOOK_TIMEOUT"] = timeout
	env["WEBHOOK_RETRY_SCHEDULE"] = "200ms,400ms,800ms,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s"
	env["CODE_SECRETS"] = "a-code-secret-for-the-webhook-tests-0123456789"
	return env
}

// waitDelivered waits until every receiver acknowledged exactly the events
// stored, and fails the test with what is missing or extra otherwise.
func waitDelivered(t *testing.T, st webhookStore, limit time.Duration, logs *logLines, rs map[string]*receiver) []string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		want := st.eventIDs(t)
		done := len(want) > 0
		for _, r := range rs {
			done = done && slices.Equal(r.ackedIDs(), want)
		}
		if done {
			return want
		}
		if time.Now().After(deadline) {
			for name, r := range rs {
				got := r.ackedIDs()
				t.Errorf("receiver %s acknowledged %d events, want the %d stored:\n missing %v\n extra %v",
					name, len(got), len(want), without(want, got), without(got, want))
				t.Logf("receiver %s: attempts %v", name, r.check(t, name))
			}
			logs.mu.Lock()
			for _, line := range logs.lines {
				if line["level"] == "warn" || line["level"] == "error" || line["level"] == "WARN" || line["level"] == "ERROR" {
					t.Logf("server log: %v", line)
				}
			}
			logs.mu.Unlock()
			t.FailNow()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// without is a less b.
func without(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// changeTokens makes events of every kind, and changes that roll back:
// creates, a redemption, a refused second one, a revoke, a wrong code,
// and keyed creates that race for one Idempotency-Key with different
// bodies, of which only one may commit. It returns the ids of the tokens
// the server said it created.
func changeTokens(t *testing.T, base string) []string {
	t.Helper()
	var ids []string
	a, err := createTicket(base, "user_hooks")
	if err != nil {
		t.Fatal(err)
	}
	b, err := createTicket(base, "user_hooks")
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, a.id, b.id)
	if r := mustSend(t, base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(a.ticket)); r.status != 200 {
		t.Fatalf("redeem: %v", r)
	}
	checkError(t, "second redeem", mustSend(t, base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(a.ticket)),
		400, tokens.CodeAlreadyUsed)
	if r := mustSend(t, base, "POST", "/v1/sign_in_tokens/"+b.id+"/revoke", testSecretKey, ""); r.status != 200 {
		t.Fatalf("revoke: %v", r)
	}
	coded := mustSend(t, base, "POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_code","code_length":6}`)
	if coded.status != 200 {
		t.Fatalf("coded create: %v", coded)
	}
	ids = append(ids, coded.body["id"].(string))
	wrong := "000000"
	if coded.body["code"] == wrong {
		wrong = "111111"
	}
	checkError(t, "wrong code", mustSend(t, base, "POST", "/v1/tickets/redeem", testSecretKey,
		fmt.Sprintf(`{"user_id":"user_code","code":%q}`, wrong)), 422, tokens.CodeCodeIncorrect)
	// Racing keyed creates: one key, bodies for different users. One
	// commits; the others replay, are refused, or roll back.
	replies := together(t, 6, func(i int) (reply, error) {
		return send(base, "POST", "/v1/sign_in_tokens", testSecretKey,
			fmt.Sprintf(`{"user_id":"user_keyed_%d"}`, i), "Idempotency-Key", "one-key-for-all")
	})
	created := map[string]bool{}
	for _, r := range replies {
		if r.status == 200 {
			created[r.body["id"].(string)] = true
		}
	}
	if len(created) != 1 {
		t.Fatalf("keyed creates: %d tokens answered, want 1: %v", len(created), replies)
	}
	for id := range created {
		ids = append(ids, id)
	}
	return ids
}

// checkBodies checks that each acknowledged body is about a token the
// server said it created, so none is about a change that rolled back.
func checkBodies(t *testing.T, r *receiver, tokenIDs []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, body := range r.bodies {
		var ev struct {
			Type string
			Data struct{ ID, UserID string }
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		if !slices.Contains(tokenIDs, ev.Data.ID) {
			t.Errorf("%s: %s about token %s, which no create answered: a change that rolled back?", id, ev.Type, ev.Data.ID)
		}
	}
}

// TestWebhooksDeliver, on both stores: one receiver
// fails the first two attempts of every event, another is down at first
// and comes up later, a third acknowledges every first attempt (which the
// failures of the others never hold back); each gets every event stored, exactly the events
// rows, once acknowledged, signed, with the same body on every attempt,
// and none for a change that rolled back; the metrics count the outcomes
// and the backlog drains.
func TestWebhooksDeliver(t *testing.T) {
	for _, newStore := range webhookStores(t) {
		st := newStore(t)
		t.Run(st.name, func(t *testing.T) {
			failing, late, healthy := newReceiver(t), newReceiver(t), newReceiver(t)
			failing.set(2, false)
			late.down()
			in := start(t, webhookEnv(t, st.url, "1s", failing.url(), late.url(), healthy.url()))
			waitReady(t, in.base)
			tokenIDs := changeTokens(t, in.base)
			time.Sleep(2 * time.Second) // the late receiver's first attempts are refused
			late.up()
			rs := map[string]*receiver{"failing": failing, "late": late, "healthy": healthy}
			ids := waitDelivered(t, st, 60*time.Second, &in.logLines, rs)
			// created x4 (and the racing keyed one), accepted, redeem_refused, revoked, code_failed
			if len(ids) < 7 {
				t.Errorf("%d events stored, want 7 or more", len(ids))
			}
			for id, n := range failing.check(t, "failing") {
				if n < 3 {
					t.Errorf("failing receiver: %s acknowledged at attempt %d, want the third or later", id, n)
				}
			}
			late.check(t, "late")
			for id, n := range healthy.check(t, "healthy") {
				if n != 1 {
					t.Errorf("healthy receiver: %s acknowledged at attempt %d, want the first", id, n)
				}
			}
			checkBodies(t, failing, tokenIDs)
			if got := metricValue(t, in.base, `signin_tokens_webhook_deliveries_total{outcome="failed"}`); got < float64(2*len(ids)) {
				t.Errorf("failed attempts counted %v, want at least %d", got, 2*len(ids))
			}
			waitFor(t, 20*time.Second, "the backlog drains", func() bool {
				delivered := metricValue(t, in.base, `signin_tokens_webhook_deliveries_total{outcome="delivered"}`)
				pending := 0.0
				for _, s := range []string{"available", "running", "retryable", "scheduled"} {
					pending += metricValue(t, in.base, `signin_tokens_webhook_jobs{state="`+s+`"}`)
				}
				return delivered == float64(3*len(ids)) && pending == 0 &&
					metricValue(t, in.base, "signin_tokens_webhook_events_unrelayed") == 0 &&
					metricValue(t, in.base, "signin_tokens_webhook_oldest_undelivered_seconds") == 0
			})
		})
	}
}

// TestWebhooksKilled, on both stores: the process is killed with
// SIGKILL while the receiver holds deliveries open, and started again on
// the same database; every committed event, before and after the kill,
// still arrives, signed, and the events delivered are the events rows.
func TestWebhooksKilled(t *testing.T) {
	for _, newStore := range webhookStores(t) {
		st := newStore(t)
		t.Run(st.name, func(t *testing.T) {
			r := newReceiver(t)
			r.set(0, true)
			env := webhookEnv(t, st.url, "2s", r.url())
			first := spawn(t, env)
			waitReady(t, first.base)
			var tokenIDs []string
			for i := range 3 {
				tok, err := createTicket(first.base, fmt.Sprintf("user_kill_%d", i))
				if err != nil {
					t.Fatal(err)
				}
				tokenIDs = append(tokenIDs, tok.id)
			}
			select {
			case <-r.held:
			case <-time.After(20 * time.Second):
				t.Fatal("no delivery reached the receiver within 20s")
			}
			if err := first.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			first.waitExit(10 * time.Second)
			r.set(0, false)
			second := spawn(t, env)
			waitReady(t, second.base)
			tok, err := createTicket(second.base, "user_after_kill")
			if err != nil {
				t.Fatal(err)
			}
			tokenIDs = append(tokenIDs, tok.id)
			// A delivery the kill left running is retried once River's
			// rescuer takes it for dead: WEBHOOK_TIMEOUT plus a margin.
			ids := waitDelivered(t, st, 90*time.Second, &second.logLines, map[string]*receiver{"held": r})
			if len(ids) != 4 {
				t.Errorf("%d events stored, want 4 creates", len(ids))
			}
			r.check(t, "held")
			checkBodies(t, r, tokenIDs)
		})
	}
}
