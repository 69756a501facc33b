package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// What webhooks need of SQLite: River's tables and its connection, and the
// relay's read of the events log (see package webhook).

// migrateQueue brings River's tables up to date, after the store's own
// migrations, whether or not webhooks are configured (as on PostgreSQL).
func (s *Store) migrateQueue(ctx context.Context) error {
	migrator, err := rivermigrate.New(riversqlite.New(s.write), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("migrate River: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return storeErr(ctx, "migrate River", err)
	}
	return nil
}

// QueueDriver is River's driver, on a pool of its own with one connection
// (opened now, closed by Close; stop River first). One connection, as
// River's SQLite driver asks, so River's own goroutines queue for it rather
// than contend for the file. Its connections have the store's settings:
// every transaction takes the write lock at BEGIN (so none can fail half
// way upgrading to a write, the way two writers deadlock), and a writer
// waits up to busy_timeout for the API's writes rather than failing.
func (s *Store) QueueDriver(ctx context.Context) (riverdriver.Driver[*sql.Tx], error) {
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	if s.queue == nil {
		db, err := sql.Open("sqlite", s.dsn)
		if err != nil {
			return nil, fmt.Errorf("open River's SQLite pool: %w", err)
		}
		db.SetMaxOpenConns(1)
		s.queue = db
	}
	return riversqlite.New(s.queue), nil
}

// PeekEvents answers the relay's cursor and up to limit events past it
// (webhook.Outbox). Events commit in seq order, one writer at a time, so
// none can still appear behind the cursor.
func (s *Store) PeekEvents(ctx context.Context, limit int) (string, []tokens.Event, error) {
	var seq int64
	if err := s.db.QueryRowContext(ctx, `SELECT seq FROM webhook_relay WHERE id = 1`).Scan(&seq); err != nil {
		return "", nil, storeErr(ctx, "peek events", err)
	}
	after := tokens.NewEventID(0, uint64(seq))
	events, _, err := listEvents(ctx, s.db, tokens.EventFilter{After: after, Limit: limit})
	return after, events, err
}

// RelayEvents moves the relay's cursor from after past events, the batch
// PeekEvents answered, in one transaction with enqueue (webhook.Outbox);
// false, with nothing enqueued, when the cursor moved since the peek. The
// transaction is the one writer from BEGIN, so relays never overlap.
func (s *Store) RelayEvents(ctx context.Context, after string, events []tokens.Event, enqueue func(context.Context, *sql.Tx) error) (bool, error) {
	const op = "relay events"
	if len(events) == 0 {
		return true, nil
	}
	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE, on the writer
	if err != nil {
		return false, storeErr(ctx, op, err)
	}
	defer tx.Rollback() // a no-op once committed
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM webhook_relay WHERE id = 1`).Scan(&seq); err != nil {
		return false, storeErr(ctx, op, err)
	}
	if tokens.NewEventID(0, uint64(seq)) != after {
		return false, nil
	}
	if err := enqueue(ctx, tx); err != nil {
		return false, storeErr(ctx, op, err)
	}
	_, last, _ := tokens.ParseEventID(events[len(events)-1].ID)
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_relay SET seq = ? WHERE id = 1`, int64(last)); err != nil {
		return false, storeErr(ctx, op, err)
	}
	if err := tx.Commit(); err != nil {
		return false, storeErr(ctx, op, err)
	}
	return true, nil
}

// HoldRelayLease is always true: one process serves a SQLite file
// (webhook.Outbox).
func (s *Store) HoldRelayLease(context.Context) (bool, error) { return true, nil }

// webhookBacklogSQL: as PostgreSQL's, on River's SQLite tables, where
// created_at is text River writes in UTC.
const webhookBacklogSQL = `
SELECT '' AS state, count(*), min(created_at)
FROM events WHERE seq > (SELECT seq FROM webhook_relay WHERE id = 1)
UNION ALL
SELECT state, count(*), CAST(min(unixepoch(created_at, 'subsec') * 1000) AS INTEGER)
FROM river_job
WHERE kind = ?1 AND state IN ('available', 'scheduled', 'retryable', 'running', 'pending')
GROUP BY state`

// WebhookBacklog reports how far deliveries of jobs of kind are behind.
func (s *Store) WebhookBacklog(ctx context.Context, kind string) (tokens.WebhookBacklog, error) {
	rows, err := s.db.QueryContext(ctx, webhookBacklogSQL, kind)
	if err != nil {
		return tokens.WebhookBacklog{}, storeErr(ctx, "webhook backlog", err)
	}
	defer rows.Close()
	b := tokens.WebhookBacklog{Jobs: map[string]int64{}}
	for rows.Next() {
		var state string
		var n int64
		var oldest sql.NullInt64
		if err := rows.Scan(&state, &n, &oldest); err != nil {
			return tokens.WebhookBacklog{}, storeErr(ctx, "webhook backlog", err)
		}
		if state == "" {
			b.Unrelayed = n
		} else {
			b.Jobs[state] = n
		}
		if t := fromMillis(oldest.Int64); oldest.Valid && (b.Oldest.IsZero() || t.Before(b.Oldest)) {
			b.Oldest = t
		}
	}
	return b, storeErr(ctx, "webhook backlog", rows.Err())
}
