package main

import (
	"context"
	"fmt"

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
		c.Observer = stats.WatchWebhooks(backlogOf(s.WebhookBacklog))
		driver, err := s.QueueDriver(ctx)
		if err != nil {
			return fmt.Errorf("webhooks: %w", err)
		}
		return webhook.Run(ctx, driver, s, c)
	case *sqlite.Store:
		c.Observer = stats.WatchWebhooks(backlogOf(s.WebhookBacklog))
		c.PollOnly = true // SQLite has no LISTEN
		driver, err := s.QueueDriver(ctx)
		if err != nil {
			return fmt.Errorf("webhooks: %w", err)
		}
		return webhook.Run(ctx, driver, s, c)
	}
	return fmt.Errorf("webhooks: no delivery for a store of type %T", st)
}

// backlogOf reads the backlog of delivery jobs through a store's method.
func backlogOf(read func(context.Context, string) (tokens.WebhookBacklog, error)) metrics.WebhookBacklogFunc {
	return func(ctx context.Context) (tokens.WebhookBacklog, error) { return read(ctx, webhook.JobKind) }
}
