package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// logLines is a program's JSON log, one decoded line each, as it is written.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
}

// read decodes r line by line until it ends, and sends the address of the
// "listening" line to listening.
func (l *logLines) read(r io.Reader, listening chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		l.mu.Lock()
		l.lines = append(l.lines, line)
		l.mu.Unlock()
		if line["message"] == "listening" {
			listening <- line["addr"].(string)
		}
	}
}

// all returns the log lines with the given message, oldest first.
func (l *logLines) all(message string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []map[string]any
	for _, line := range l.lines {
		if line["message"] == message {
			found = append(found, line)
		}
	}
	return found
}

// logged returns the first log line with the given message.
func (l *logLines) logged(message string) map[string]any {
	if found := l.all(message); len(found) > 0 {
		return found[0]
	}
	return nil
}

// instance is the real program started in-process by run.
type instance struct {
	logLines
	t      *testing.T
	base   string // http://127.0.0.1:PORT
	cancel context.CancelFunc
	done   chan error
}

// start runs the program with env as its whole environment and waits until it
// listens. It stops when the test ends.
func start(t *testing.T, env map[string]string, args ...string) *instance {
	t.Helper()
	if _, ok := env["HTTP_ADDR"]; !ok {
		env["HTTP_ADDR"] = "127.0.0.1:0"
	}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	in := &instance{t: t, cancel: cancel, done: make(chan error, 1)}
	listening := make(chan string, 1)
	go in.read(pr, listening)
	go func() {
		err := run(ctx, append([]string{"server"}, args...), getenv, pw, io.Discard)
		pw.Close()
		in.done <- err
	}()
	select {
	case addr := <-listening:
		in.base = "http://" + addr
	case err := <-in.done:
		cancel()
		t.Fatalf("program exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("program did not listen within 30s")
	}
	t.Cleanup(func() { in.stop() })
	return in
}

// stop cancels the program's context, as SIGTERM does, and waits for it.
func (in *instance) stop() error {
	in.cancel()
	select {
	case err := <-in.done:
		in.done <- err // let a second stop see it too
		return err
	case <-time.After(30 * time.Second):
		in.t.Fatal("program did not stop within 30s")
		return nil
	}
}

// TestZeroConfigRestart is a new user's first session: no configuration at
// all, a ticket created and redeemed, a restart, and a ticket issued before
// the restart still redeemed with the same key.
func TestZeroConfigRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := func() map[string]string { return map[string]string{"DATA_DIR": dir} }

	first := start(t, env())
	announce := first.logged("using a generated development secret key (kept in DATA_DIR); set SECRET_KEYS in production")
	if announce == nil {
		t.Fatal("the log does not announce the generated secret key")
	}
	key, _ := announce["secret_key"].(string)
	if !strings.HasPrefix(key, "sk_dev_") || !strings.Contains(fmt.Sprint(announce["try"]), "curl") {
		t.Fatalf("announcement: got %v", announce)
	}
	if l := first.logged("database ready"); l == nil || !strings.HasPrefix(fmt.Sprint(l["store"]), "sqlite ") {
		t.Fatalf("store: got %v, want SQLite", l)
	}
	a := mustSend(t, first.base, "POST", "/v1/sign_in_tokens", key, `{"user_id":"user_1"}`)
	if a.status != 200 {
		t.Fatalf("create: %v", a)
	}
	b := mustSend(t, first.base, "POST", "/v1/sign_in_tokens", key, `{"user_id":"user_2"}`)
	if b.status != 200 {
		t.Fatalf("create: %v", b)
	}
	ticketA, _ := a.body["token"].(string)
	ticketB, _ := b.body["token"].(string)
	if r := mustSend(t, first.base, "POST", "/v1/tickets/redeem", key, ticketBody(ticketA)); r.status != 200 || r.body["status"] != "accepted" {
		t.Fatalf("redeem: %v", r)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	second := start(t, env())
	if second.logged("using a generated development secret key (kept in DATA_DIR); set SECRET_KEYS in production")["secret_key"] != key {
		t.Error("the secret key changed across the restart")
	}
	if r := mustSend(t, second.base, "POST", "/v1/tickets/redeem", key, ticketBody(ticketB)); r.status != 200 || r.body["user_id"] != "user_2" {
		t.Fatalf("redeem after restart: %v", r)
	}
	if r := mustSend(t, second.base, "POST", "/v1/tickets/redeem", key, ticketBody(ticketA)); r.status != 400 || r.code() != tokens.CodeAlreadyUsed {
		t.Fatalf("second redeem after restart: %v", r)
	}
}
