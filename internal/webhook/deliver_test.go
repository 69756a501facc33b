package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// counts is an Observer that counts.
type counts struct{ delivered, failed, discarded atomic.Int64 }

func (c *counts) Delivered()     { c.delivered.Add(1) }
func (c *counts) AttemptFailed() { c.failed.Add(1) }
func (c *counts) Discarded()     { c.discarded.Add(1) }

func testWorker(t *testing.T, obs Observer, timeout time.Duration) *worker {
	t.Helper()
	signer, err := NewSigner(mustSecret(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
	if err != nil {
		t.Fatal(err)
	}
	return &worker{client: newHTTPClient(2), signer: signer, timeout: timeout, observer: obs,
		now: func() time.Time { return time.Unix(1614265330, 0) }}
}

func job(url string, attempt, maxAttempts int) *river.Job[deliveryArgs] {
	return &river.Job[deliveryArgs]{
		JobRow: &rivertype.JobRow{Attempt: attempt, MaxAttempts: maxAttempts},
		Args:   deliveryArgs{EventID: "evt_1", URL: url, Body: []byte(`{"id":"evt_1"}`)},
	}
}

// TestWorkOutcomes: a 2xx acknowledges; any other status, a redirect
// included (never followed), fails the attempt, and the last failed attempt
// is a discard.
func TestWorkOutcomes(t *testing.T) {
	var redirected atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/redirect":
			http.Redirect(w, r, "/ok?followed", http.StatusFound)
		case "/big":
			// An answer far larger than is read: the attempt still ends.
			w.WriteHeader(http.StatusOK)
			chunk := []byte(strings.Repeat("x", 1<<16))
			for range 1 << 10 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
		if r.URL.RawQuery == "followed" {
			redirected.Store(true)
		}
	}))
	defer srv.Close()
	cases := []struct {
		path                         string
		attempt                      int
		wantErr                      string
		delivered, failed, discarded int64
	}{
		{"/ok", 1, "", 1, 0, 0},
		{"/big", 1, "", 1, 0, 0},
		{"/fail", 1, "answered 500", 0, 1, 0},
		{"/redirect", 1, "answered 302", 0, 1, 0},
		{"/fail", 3, "answered 500", 0, 0, 1},
	}
	for _, c := range cases {
		obs := &counts{}
		err := testWorker(t, obs, 5*time.Second).Work(context.Background(), job(srv.URL+c.path, c.attempt, 3))
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s attempt %d: got %v, want error %q", c.path, c.attempt, err, c.wantErr)
		}
		if got := [3]int64{obs.delivered.Load(), obs.failed.Load(), obs.discarded.Load()}; got != [3]int64{c.delivered, c.failed, c.discarded} {
			t.Errorf("%s attempt %d: delivered, failed, discarded %v, want %v", c.path, c.attempt, got, [3]int64{c.delivered, c.failed, c.discarded})
		}
	}
	if redirected.Load() {
		t.Error("the redirect was followed")
	}
}

// TestWorkSendsSignedHeaders: the request carries the event id, the
// attempt's time and the signature of exactly the bytes sent.
func TestWorkSendsSignedHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	defer srv.Close()
	w := testWorker(t, &counts{}, 5*time.Second)
	if err := w.Work(context.Background(), job(srv.URL, 1, 3)); err != nil {
		t.Fatal(err)
	}
	h := <-got
	want := map[string]string{
		"Webhook-Id":        "evt_1",
		"Webhook-Timestamp": strconv.Itoa(1614265330),
		"Webhook-Signature": w.signer.Signature("evt_1", time.Unix(1614265330, 0), []byte(`{"id":"evt_1"}`)),
		"Content-Type":      "application/json",
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s: got %q, want %q", k, h.Get(k), v)
		}
	}
}

// TestWorkTimesOut: a receiver that never answers fails the attempt after
// the timeout, and a refused connection fails it at once.
func TestWorkTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	obs := &counts{}
	start := time.Now()
	err := testWorker(t, obs, 300*time.Millisecond).Work(context.Background(), job(srv.URL, 1, 3))
	if took := time.Since(start); err == nil || took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("hanging receiver: got %v after %s, want a timeout after 300ms", err, took)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	if err := testWorker(t, obs, time.Second).Work(context.Background(), job(closed.URL, 1, 3)); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed port: got %v, want connection refused", err)
	}
	if obs.failed.Load() != 2 {
		t.Errorf("failed attempts: got %d, want 2", obs.failed.Load())
	}
}

func TestRedactHidesCredentials(t *testing.T) {
	if got := redact("https://user:pw@hooks.example.com/in?token=s3cret#x"); got != "https://hooks.example.com/in" {
		t.Errorf("redact: got %q", got)
	}
}
