package metrics_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/metrics"
	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestWebhookMetrics: no webhook series until webhooks run; then attempts
// by outcome, and the backlog of a real store read at each scrape: an
// event not yet relayed is counted, and aged from when it was recorded.
func TestWebhookMetrics(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	srv := httptest.NewServer(muxWith(m))
	defer srv.Close()
	for key := range scrape(t, srv.URL) {
		if strings.HasPrefix(key, "signin_tokens_webhook_") {
			t.Errorf("%s present with webhooks off", key)
		}
	}

	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	recorded := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	tok := tokens.Token{ID: "sit_metrics", UserID: "user_metrics", Status: tokens.StatusPending,
		TicketHash: tokens.HashTicket("t"), CreatedAt: recorded, UpdatedAt: recorded, ExpiresAt: recorded.Add(time.Hour)}
	if _, err := st.Create(ctx, tokens.Creation{Token: tok}); err != nil {
		t.Fatal(err)
	}
	d := m.WatchWebhooks(func(ctx context.Context) (tokens.WebhookBacklog, error) {
		return st.WebhookBacklog(ctx, "webhook_delivery")
	})
	d.Delivered()
	d.AttemptFailed()
	d.AttemptFailed()
	got := scrape(t, srv.URL)
	for key, want := range map[string]float64{
		`signin_tokens_webhook_deliveries_total{outcome="delivered"}`: 1,
		`signin_tokens_webhook_deliveries_total{outcome="failed"}`:    2,
		`signin_tokens_webhook_deliveries_total{outcome="discarded"}`: 0,
		`signin_tokens_webhook_events_unrelayed{}`:                    1,
		`signin_tokens_webhook_jobs{state="available"}`:               0,
		`signin_tokens_webhook_jobs{state="retryable"}`:               0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s: got %v (present %v), want %v", key, v, ok, want)
		}
	}
	if age := got[`signin_tokens_webhook_oldest_undelivered_seconds{}`]; age < 59 || age > 120 {
		t.Errorf("oldest undelivered: %vs, want about 60s", age)
	}
}

// TestWebhookBacklogUnreadable: a backlog that cannot be read leaves its
// series out of the scrape, and the scrape still answers.
func TestWebhookBacklogUnreadable(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.WatchWebhooks(func(context.Context) (tokens.WebhookBacklog, error) {
		return tokens.WebhookBacklog{}, errors.New("down")
	})
	srv := httptest.NewServer(muxWith(m))
	defer srv.Close()
	got := scrape(t, srv.URL)
	if _, ok := got[`signin_tokens_webhook_events_unrelayed{}`]; ok {
		t.Error("backlog series present though the backlog could not be read")
	}
	if _, ok := got[`signin_tokens_webhook_deliveries_total{outcome="delivered"}`]; !ok {
		t.Error("deliveries series missing")
	}
}
