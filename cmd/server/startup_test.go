package main

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// silentDatabase accepts TCP connections where PostgreSQL would and never
// answers, so a client trying to connect waits until it gives up. It counts
// the connections still open.
type silentDatabase struct {
	ln   net.Listener
	mu   sync.Mutex
	open int
}

func newSilentDatabase(t *testing.T) *silentDatabase {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	db := &silentDatabase{ln: ln}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			db.mu.Lock()
			db.open++
			db.mu.Unlock()
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				// Read, and drop, what the client sends, until it hangs up or
				// the test ends.
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				io.Copy(io.Discard, c)
				db.mu.Lock()
				db.open--
				db.mu.Unlock()
			}()
		}
	}()
	return db
}

func (db *silentDatabase) url() string {
	return "postgres://postgres@" + db.ln.Addr().String() + "/test?sslmode=disable"
}

func (db *silentDatabase) openConns() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.open
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestStartupFailureStopsWhatStarted: when start-up fails half way, after the
// connect-with-retry loop began (here against a database that never answers),
// serve returns only once that loop has stopped, and it leaves no listener
// open. A loop left running would hold its connection open, or dial after
// serve returned.
func TestStartupFailureStopsWhatStarted(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	cases := []struct {
		name    string
		failing string // the variable set to an address already in use
	}{
		{"HTTP_ADDR in use", "HTTP_ADDR"},
		{"PPROF_ADDR in use", "PPROF_ADDR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := newSilentDatabase(t)
			env := serverEnv(t, db.url())
			env["HTTP_ADDR"] = freeAddr(t)
			env[tc.failing] = taken.Addr().String()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"server"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.failing) {
					t.Fatalf("run: got %v, want an error naming %s", err, tc.failing)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("run did not return within 20s")
			}

			// A loop still running holds its connection, or opens one late.
			time.Sleep(time.Second)
			if n := db.openConns(); n != 0 {
				t.Errorf("connections to the database after serve returned: got %d, want 0", n)
			}
			if tc.failing != "HTTP_ADDR" {
				ln, err := net.Listen("tcp", env["HTTP_ADDR"])
				if err != nil {
					t.Fatalf("HTTP_ADDR after serve returned: %v, want it free", err)
				}
				ln.Close()
			}
		})
	}
}

// TestPprofStopsWithServe: with PPROF_ADDR set the profiles are served there,
// and once serve has returned that address is free again.
func TestPprofStopsWithServe(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	in := start(t, map[string]string{"DATA_DIR": t.TempDir(), "PPROF_ADDR": addr})
	resp, err := testClient.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /debug/pprof/cmdline: got %d, want 200", resp.StatusCode)
	}
	testClient.CloseIdleConnections()
	if err := in.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("PPROF_ADDR after serve returned: %v, want it free", err)
	}
	ln.Close()
}
