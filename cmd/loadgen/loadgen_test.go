package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
)

func TestRawConnKeepsAliveAndReadsAnswers(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer sk_test" || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		w.Write(append([]byte(r.URL.Path+" "), body...))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c, err := newRawConn(srv.URL, "sk_test")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var resp []byte
	for i, body := range []string{`{"a":"1"}`, `{"ticket":"x.y.z"}`, ""} {
		status, err := c.post("/v1/p", []byte(body), &resp)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if want := "/v1/p " + body; status != http.StatusTeapot || string(resp) != want {
			t.Errorf("request %d: got %d %q, want %d %q", i, status, resp, http.StatusTeapot, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("got %d connections, want 1 kept alive", n)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {1, 100}, {0, 1}} {
		if got := percentile(d, c.q); got != c.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestProcessFigures(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if got := processCPU(os.Getpid()); got <= 0 {
		t.Errorf("processCPU(self) = %v, want > 0", got)
	}
	if got := peakRSS(os.Getpid()); got <= 0 {
		t.Errorf("peakRSS(self) = %d KiB, want > 0", got)
	}
	if got := machineCPU(); got <= 0 {
		t.Errorf("machineCPU() = %v, want > 0", got)
	}
}

func TestParseFlagsScale(t *testing.T) {
	cases := []struct {
		args []string
		ok   bool
	}{
		{[]string{"-server", "bin/server", "-scale", "1000"}, true},
		{[]string{"-url", "http://x", "-key", "k", "-database-url", "postgres://x", "-phases", "create", "-scale", "1000"}, false},
		{[]string{"-server", "bin/server", "-scale", "1000", "-seed", "1000"}, false},
		{[]string{"-server", "bin/server", "-scale", "1000", "-rate", "100"}, false},
	}
	for _, tc := range cases {
		o, err := parseFlags(tc.args, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("parseFlags(%q): got %v, want ok %v", tc.args, err, tc.ok)
		}
		if err == nil && o.scale != 1000 {
			t.Errorf("parseFlags(%q): scale %d, want 1000", tc.args, o.scale)
		}
	}
}

// TestExplainList runs the plans loadgen prints against a migrated schema:
// the statements are the store's own, so they must run as the store runs them.
func TestExplainList(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	st, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	admin, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var out strings.Builder
	b := &bench{admin: admin, out: &out}
	if err := b.explainList(ctx); err != nil {
		t.Fatalf("explainList: %v", err)
	}
	for _, want := range []string{
		"EXPLAIN (ANALYZE, BUFFERS) list unfiltered: SELECT id, user_id,",
		"EXPLAIN (ANALYZE, BUFFERS) list user_id=user_4242: SELECT count(*) FROM sign_in_tokens WHERE substr(id, 1, 4) = 'sit_' AND user_id = $1",
		"EXPLAIN (ANALYZE, BUFFERS) list status=revoked offset=1000: SELECT id,",
		"rolled back: DELETE FROM sign_in_tokens WHERE id IN",
		"rolled back: DELETE FROM events",
		"EXPLAIN (ANALYZE, BUFFERS) of a group of 0 redemptions",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output: got\n%s\nwant it to contain %q", out.String(), want)
		}
	}
}

// TestOTLPSink: the sink takes trace exports and counts them, and refuses
// anything else.
func TestOTLPSink(t *testing.T) {
	s, err := startOTLPSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	resp, err := http.Post(s.url+"/v1/traces", "application/x-protobuf", strings.NewReader("spans"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || s.exports.Load() != 1 || s.received.Load() != 5 {
		t.Errorf("export: status %d, %d exports of %d bytes; want 200, 1 of 5", resp.StatusCode, s.exports.Load(), s.received.Load())
	}
	if resp, err := http.Get(s.url + "/v1/traces"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET: %v %v, want 404", resp, err)
	}
}
