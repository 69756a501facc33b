package main

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
)

// TestSIGTERMFinishesInFlightRequests sends SIGTERM to the real binary while
// a create waits on a slow user directory. New connections are refused at
// once, the process stays up until the in-flight create has answered 200
// and stored its token, and then it exits 0, well within SHUTDOWN_TIMEOUT.
func TestSIGTERMFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 10 * time.Second
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	users := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(users.Close)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // runs first

	dbURL := pgtest.URL(t)
	env := serverEnv(t, dbURL)
	env["USER_LOOKUP_URL"] = users.URL + "/users/{user_id}"
	env["SHUTDOWN_TIMEOUT"] = shutdownTimeout.String()
	p := spawn(t, env)
	waitReady(t, p.base)
	testClient.CloseIdleConnections() // an unused connection would hold shutdown up for 5s

	inFlight := make(chan reply, 1)
	go func() {
		r, err := send(p.base, "POST", "/v1/sign_in_tokens", testSecretKey, `{"user_id":"user_slow"}`)
		if err != nil {
			t.Errorf("in-flight create: %v", err)
		}
		inFlight <- r
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the create did not reach the user directory within 10s")
	}

	p.terminate()
	sigterm := time.Now()
	waitFor(t, 5*time.Second, "new connections refused", func() bool {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	// The line is written before the listener closes, but read from the
	// process's output by another goroutine: give that a moment.
	waitFor(t, 5*time.Second, "the log to say it is shutting down", func() bool {
		return p.logged("shutting down: finishing in-flight requests") != nil
	})
	select {
	case r := <-inFlight:
		t.Fatalf("the in-flight create answered before the user directory did: %v", r)
	case <-p.exited:
		t.Fatal("the process exited with a request in flight")
	default:
	}

	releaseOnce.Do(func() { close(release) })
	var created reply
	select {
	case created = <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight create did not answer within 10s")
	}
	if created.status != 200 || created.body["status"] != "pending" {
		t.Fatalf("in-flight create: got %v, want 200 pending", created)
	}
	if code := p.waitExit(shutdownTimeout); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	if took := time.Since(sigterm); took >= shutdownTimeout {
		t.Errorf("exited %s after SIGTERM, want within SHUTDOWN_TIMEOUT %s", took, shutdownTimeout)
	}
	if p.logged("stopped") == nil {
		t.Error("the log does not say the process stopped")
	}
	// The token was written after SIGTERM: the database stayed open for it.
	id, _ := created.body["id"].(string)
	if got := storedStatus(t, connect(t, dbURL), id); got != "pending" {
		t.Errorf("stored token %s: got %s, want pending", id, got)
	}
}

// TestSIGTERMBoundedByShutdownTimeout sends SIGTERM to the real binary while
// a redeem waits on a database that never answers. The process does not
// wait for it past SHUTDOWN_TIMEOUT: it cuts the request, exits non-zero
// saying why, and the token is unchanged.
func TestSIGTERMBoundedByShutdownTimeout(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = time.Second
	dbURL := pgtest.URL(t)
	proxy := newFaultProxy(t, dbURL, true)
	env := serverEnv(t, proxy.url(t, dbURL))
	env["SHUTDOWN_TIMEOUT"] = shutdownTimeout.String()
	p := spawn(t, env)
	waitReady(t, p.base)
	tok, err := createTicket(p.base, "user_stuck")
	if err != nil {
		t.Fatal(err)
	}
	testClient.CloseIdleConnections()

	held := proxy.hold(tok.id, holdQuery)
	inFlight := make(chan error, 1)
	go func() {
		r, err := send(p.base, "POST", "/v1/tickets/redeem", testSecretKey, ticketBody(tok.ticket))
		if err == nil {
			err = errors.New("answered: " + r.String())
		}
		inFlight <- err
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the redeem did not reach the database within 10s")
	}

	p.terminate()
	sigterm := time.Now()
	code := p.waitExit(shutdownTimeout + 3*time.Second)
	t.Logf("exited %s after SIGTERM with code %d", time.Since(sigterm), code)
	if code != 1 || !strings.Contains(p.stderr.String(), "shutdown") {
		t.Errorf("exit: got code %d, stderr %q; want 1 and the reason", code, p.stderr.String())
	}
	select {
	case err := <-inFlight:
		if !strings.Contains(err.Error(), "EOF") {
			t.Errorf("the cut redeem: got %v, want the connection closed without an answer", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cut redeem's connection stayed open after the process exited")
	}
	if got := storedStatus(t, connect(t, dbURL), tok.id); got != "pending" {
		t.Errorf("stored token: got %s, want pending", got)
	}
}
