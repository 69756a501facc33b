package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// What webhooks need of PostgreSQL: River's tables and its connections, and
// the relay's read of the events log (see package webhook).

// migrateQueue brings River's tables up to date in schema, after the
// store's own migrations. They are migrated whether or not webhooks are
// configured, so that a migration job run without the webhook settings
// leaves a schema that serves with them; idle, they cost nothing. River's
// migrator takes no lock of its own, so replicas that start together take
// turns under an advisory lock (another key than goose's, which is held
// only while goose works). The lock is held on a connection of its own,
// outside the pool, which River's migrator needs whole: a pool of one
// connection would otherwise wait on itself.
func (s *Store) migrateQueue(ctx context.Context, schema string) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return s.fail(ctx, "migrate River", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	key := migrationLockID(schema + "\x00river")
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return s.fail(ctx, "migrate River", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
	migrator, err := rivermigrate.New(riverpgxv5.New(s.pool), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("migrate River: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return s.fail(ctx, "migrate River", err)
	}
	return nil
}

// queueMaxConns is the size of River's pool: its listener holds one, and
// fetching and completing jobs take the others briefly. A pool of its own
// keeps River from ever taking a connection a request is waiting for.
const queueMaxConns = 3

// maxQueueSchemaBytes leaves room in 63 bytes for "." and River's longest
// channel name, river_leadership.
const maxQueueSchemaBytes = 63 - len(".river_leadership")

// queuePool is River's pool, opened on first use.
type queuePool struct {
	cfg  *pgxpool.Config
	mu   sync.Mutex
	pool *pgxpool.Pool
}

func (q *queuePool) open(ctx context.Context) (*pgxpool.Pool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pool == nil {
		cfg := q.cfg.Copy()
		cfg.MaxConns = queueMaxConns
		cfg.MinConns = 0
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		q.pool = pool
	}
	return q.pool, nil
}

func (q *queuePool) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pool != nil {
		q.pool.Close()
	}
}

// QueueDriver is River's driver, on a small pool of its own (opened now,
// closed by Close): stop River before closing the store.
//
// River names its LISTEN/NOTIFY channels after the schema, and PostgreSQL
// cuts identifiers at 63 bytes: a longer schema name would fail every
// enqueue, so it is refused here, by name.
func (s *Store) QueueDriver(ctx context.Context) (riverdriver.Driver[pgx.Tx], error) {
	var schema string
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(current_schema(), '')").Scan(&schema); err != nil {
		return nil, s.fail(ctx, "connect River", err)
	}
	if len(schema) > maxQueueSchemaBytes {
		return nil, fmt.Errorf("schema %q: River's notification channels are named after the schema, so it may have at most %d bytes", schema, maxQueueSchemaBytes)
	}
	pool, err := s.queue.open(ctx)
	if err != nil {
		return nil, storeErr(ctx, "connect River", err)
	}
	return riverpgxv5.New(pool), nil
}

// RelayEvents moves the relay's cursor from after past events, the batch
// PeekEvents answered, in one transaction with enqueue, which inserts the
// jobs for them (webhook.Outbox). It answers false, and enqueues nothing,
// when another relay holds the cursor row or has moved it since the peek.
//
// The row is locked FOR UPDATE SKIP LOCKED, so a relay never waits on
// another's transaction. The batch needs no second read: PeekEvents read
// below the snapshot's xmin, where no event can still appear, so the
// events after an unchanged cursor are still exactly those.
func (s *Store) RelayEvents(ctx context.Context, after string, events []tokens.Event, enqueue func(context.Context, pgx.Tx) error) (bool, error) {
	const op = "relay events"
	if len(events) == 0 {
		return true, nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, s.fail(ctx, op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op once committed
	var xid, seq int64
	err = tx.QueryRow(ctx, "SELECT xid, seq FROM webhook_relay WHERE id = 1 FOR UPDATE SKIP LOCKED").Scan(&xid, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // another relay is at work
	}
	if err != nil {
		return false, s.fail(ctx, op, err)
	}
	if tokens.NewEventID(uint64(xid), uint64(seq)) != after {
		return false, nil
	}
	if err := enqueue(ctx, tx); err != nil {
		return false, s.fail(ctx, op, err)
	}
	lastXid, lastSeq, _ := tokens.ParseEventID(events[len(events)-1].ID)
	if _, err := tx.Exec(ctx, "UPDATE webhook_relay SET xid = $1, seq = $2 WHERE id = 1", int64(lastXid), int64(lastSeq)); err != nil {
		return false, s.fail(ctx, op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, s.fail(ctx, op, err)
	}
	return true, nil
}

// webhookBacklogSQL counts the events past the relay's cursor and the
// unfinished delivery jobs by state, with the oldest of each. It reads
// River's table, which this package's migrations create.
const webhookBacklogSQL = `
SELECT '' AS state, count(*), min(e.created_at)
FROM events AS e, webhook_relay AS r
WHERE (e.xid, e.seq) > (r.xid, r.seq)
UNION ALL
SELECT state::text, count(*), min(created_at)
FROM river_job
WHERE kind = $1 AND state IN ('available', 'scheduled', 'retryable', 'running', 'pending')
GROUP BY state`

// WebhookBacklog reports how far deliveries of jobs of kind are behind.
func (s *Store) WebhookBacklog(ctx context.Context, kind string) (tokens.WebhookBacklog, error) {
	rows, err := s.pool.Query(ctx, webhookBacklogSQL, kind)
	if err != nil {
		return tokens.WebhookBacklog{}, s.fail(ctx, "webhook backlog", err)
	}
	b := tokens.WebhookBacklog{Jobs: map[string]int64{}}
	var state string
	var n int64
	var oldest *time.Time
	_, err = pgx.ForEachRow(rows, []any{&state, &n, &oldest}, func() error {
		if state == "" {
			b.Unrelayed = n
		} else {
			b.Jobs[state] = n
		}
		if oldest != nil && (b.Oldest.IsZero() || oldest.Before(b.Oldest)) {
			b.Oldest = oldest.UTC()
		}
		return nil
	})
	if err != nil {
		return tokens.WebhookBacklog{}, s.fail(ctx, "webhook backlog", err)
	}
	return b, nil
}

// PeekEvents answers the relay's cursor and up to limit events past it,
// read as ListEvents reads them, only below the snapshot's xmin, so the
// cursor never passes an event that commits later with a smaller position
// (webhook.Outbox). An idle relay costs these two reads and no transaction.
func (s *Store) PeekEvents(ctx context.Context, limit int) (string, []tokens.Event, error) {
	var xid, seq int64
	if err := s.pool.QueryRow(ctx, "SELECT xid, seq FROM webhook_relay WHERE id = 1").Scan(&xid, &seq); err != nil {
		return "", nil, s.fail(ctx, "peek events", err)
	}
	after := tokens.NewEventID(uint64(xid), uint64(seq))
	events, _, err := s.listEvents(ctx, s.pool, tokens.EventFilter{After: after, Limit: limit})
	return after, events, err
}

// relayLease is the session advisory lock that makes one process the
// relay of a database, held on a connection of its own.
type relayLease struct {
	mu      sync.Mutex
	conn    *pgx.Conn
	key     int64 // the lock's key, per schema as migrations' are
	held    bool
	checked time.Time
}

// leaseCheckEvery is how often a held lease's connection is checked: a
// session that ended has let the lock go, and another process may hold it.
const leaseCheckEvery = 5 * time.Second

// HoldRelayLease tells whether this process is the relay for the store's
// schema (webhook.Outbox). The first process to ask takes a session
// advisory lock and keeps it while its connection lives; the others are
// refused until that session ends (its process stopped or died), and then
// one of them takes it over on its next ask.
func (s *Store) HoldRelayLease(ctx context.Context) (bool, error) {
	l := &s.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil && l.held && time.Since(l.checked) < leaseCheckEvery {
		return true, nil
	}
	if l.conn != nil && (l.conn.IsClosed() || l.conn.Ping(ctx) != nil) {
		l.close()
	}
	if l.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
		if err != nil {
			return false, s.fail(ctx, "relay lease", err)
		}
		var schema string
		if err := conn.QueryRow(ctx, "SELECT coalesce(current_schema(), '')").Scan(&schema); err != nil {
			conn.Close(context.Background())
			return false, s.fail(ctx, "relay lease", err)
		}
		l.conn, l.key = conn, migrationLockID(schema+"\x00webhook relay")
	}
	if !l.held {
		if err := l.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", l.key).Scan(&l.held); err != nil {
			l.close()
			return false, s.fail(ctx, "relay lease", err)
		}
	}
	l.checked = time.Now()
	return l.held, nil
}

// close drops the lease's connection, and with it the lock if held.
func (l *relayLease) close() {
	if l.conn != nil {
		l.conn.Close(context.Background())
	}
	l.conn, l.held = nil, false
}
