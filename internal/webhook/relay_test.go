package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestRelaySidelinesAHangingReceiver runs the relay and River on a real
// SQLite store with two receivers: one that never answers, one that does.
// The first event reaches the healthy receiver at once, but its batch
// waits for the hanging attempt's timeout, and so does the second event,
// relayed after it. By then the hanging URL is sidelined: the third event
// reaches the healthy receiver well within that timeout, at its first
// attempt, and the hanging URL's deliveries are left to River as jobs.
func TestRelaySidelinesAHangingReceiver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "tokens.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	release := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // until the attempt's timeout, or the test's end
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hanging.Close()
	defer close(release)
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	attempts := map[string]int{}
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get("webhook-id")
		attempts[id]++
		if _, ok := arrived[id]; !ok {
			arrived[id] = time.Now()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer healthy.Close()

	const timeout = 2 * time.Second
	signer, err := NewSigner(mustSecret(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
	if err != nil {
		t.Fatal(err)
	}
	obs := &counts{}
	c := Config{
		URLs: []string{hanging.URL, healthy.URL}, Signer: signer, Timeout: timeout, Concurrency: 4,
		Schedule: Schedule{time.Hour}, Observer: obs, Logger: zerolog.Nop(), PollOnly: true,
		Encode: func(e tokens.Event) ([]byte, error) { return json.Marshal(map[string]string{"id": e.ID}) },
	}
	driver, err := s.QueueDriver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, driver, s, c) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// create stores a token and answers when its created event reached the
	// healthy receiver, and that event's id.
	create := func(id string) (time.Duration, string) {
		t.Helper()
		now := time.Now()
		tok := tokens.Token{ID: id, UserID: "user_" + id, Status: tokens.StatusPending,
			TicketHash: tokens.HashTicket("ticket " + id), CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := s.Create(ctx, tokens.Creation{Token: tok}); err != nil {
			t.Fatal(err)
		}
		events, _, err := s.ListEvents(ctx, tokens.EventFilter{UserID: tok.UserID})
		if err != nil || len(events) != 1 {
			t.Fatalf("events of %s: %v (%v)", id, events, err)
		}
		eventID := events[0].ID
		for deadline := now.Add(3 * timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			at, ok := arrived[eventID]
			mu.Unlock()
			if ok {
				return at.Sub(now), eventID
			}
		}
		t.Fatalf("%s's event never reached the healthy receiver", id)
		return 0, ""
	}

	create("sit_first")
	second, _ := create("sit_second")
	if second < timeout/2 {
		t.Errorf("the second event arrived after %v, while the first batch waits for the hanging attempt (%v): was it attempted?", second, timeout)
	}
	third, thirdID := create("sit_third")
	if third >= timeout/2 {
		t.Errorf("with the hanging URL sidelined, the third event took %v, want well under %v", third, timeout)
	}
	mu.Lock()
	if attempts[thirdID] != 1 {
		t.Errorf("the healthy receiver got the third event %d times, want once", attempts[thirdID])
	}
	mu.Unlock()
	// The third batch's jobs commit with its cursor, just after its
	// first attempts.
	var jobs int64
	var backlog tokens.WebhookBacklog
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if backlog, err = s.WebhookBacklog(ctx, JobKind); err != nil {
			t.Fatal(err)
		}
		jobs = 0
		for _, n := range backlog.Jobs {
			jobs += n
		}
		if jobs >= 3 {
			break
		}
	}
	if jobs != 3 {
		t.Errorf("%d delivery jobs pending (%v), want the hanging URL's 3", jobs, backlog.Jobs)
	}
	if d := obs.delivered.Load(); d != 3 {
		t.Errorf("counted %d deliveries, want the healthy receiver's 3", d)
	}
}
