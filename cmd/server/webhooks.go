package main

import (
	"context"
	"fmt"

	"github.com/riverqueue/river/riverdriver"
	"github.com/rs/zerolog"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/metrics"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
	"github.com/signin-tokens/signin-tokens/internal/webhook"
)

// runWebhooks delivers events from st, once it is open, until ctx ends.
// Only called with WEBHOOK_URLS set: otherwise nothing of River runs.
func runWebhooks(ctx context.Context, cfg Webhooks, st tokens.Store, stats *metrics.Metrics, log zerolog.Logger) error {
	c := webhook.Config{
		URLs:        cfg.URLs,
		Signer:      cfg.Signer,
		Timeout:     cfg.Timeout,
		Concurrency: cfg.Concurrency,
		Schedule:    cfg.Schedule,
		Encode:      apihttp.EventJSON,
		Logger:      log,
	}
	switch s := st.(type) {
	case *postgres.Store:
		return deliver(ctx, s, c, stats)
	case *sqlite.Store:
		c.PollOnly = true // SQLite has no LISTEN
		return deliver(ctx, s, c, stats)
	}
	return fmt.Errorf("webhooks: no delivery for a store of type %T", st)
}

// deliveryStore is what deliveries need of a store whose transactions are
// TTx: the events log, River's driver and the backlog's figures.
type deliveryStore[TTx any] interface {
	webhook.Outbox[TTx]
	QueueDriver(context.Context) (riverdriver.Driver[TTx], error)
	WebhookBacklog(context.Context, string) (tokens.WebhookBacklog, error)
}

// deliver runs deliveries from s until ctx ends.
func deliver[TTx any](ctx context.Context, s deliveryStore[TTx], c webhook.Config, stats *metrics.Metrics) error {
	c.Observer = stats.WatchWebhooks(backlogOf(s.WebhookBacklog))
	driver, err := s.QueueDriver(ctx)
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	return webhook.Run(ctx, driver, s, c)
}

// backlogOf reads the backlog of delivery jobs through a store's method.
func backlogOf(read func(context.Context, string) (tokens.WebhookBacklog, error)) metrics.WebhookBacklogFunc {
	return func(ctx context.Context) (tokens.WebhookBacklog, error) { return read(ctx, webhook.JobKind) }
}
