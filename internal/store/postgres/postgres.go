// Package postgres keeps sign-in tokens in PostgreSQL, through a pgx pool.
// It is the only package that knows pgx: its errors are translated here into
// the domain's (tokens.ErrNotFound, tokens.ErrUnavailable).
package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
	"github.com/signin-tokens/signin-tokens/migrations"
)

// Store is a tokens.Store on PostgreSQL.
type Store struct {
	pool  *pgxpool.Pool
	group *writers // nil: every write is its own statement
}

// Options tunes a Store beyond what its URL says.
type Options struct {
	// Writers is how many writers send creates and redemptions (see
	// group.go): each sends the writes that queued while it was busy as one
	// transaction. 0 sends every write as its own statement, on the
	// caller's goroutine.
	Writers int
}

var _ tokens.Store = (*Store)(nil)

// DefaultMaxConns is the pool size when the URL sets no pool_max_conns.
// pgx's own default, max(4, CPUs), makes requests queue for a connection on
// a small machine, and fewer commits then share each WAL flush: on 2 cores
// at 16 concurrent requests, create-then-redeem went from 0.37 of the raw
// pgx baseline with 4 connections to about 0.5 with 16 (docs/benchmarks.md).
const DefaultMaxConns = 16

// Open connects to the database at databaseURL, a postgres:// URL or a
// keyword/value string. URL parameters pgx knows (search_path and other
// run-time parameters, pool_max_conns and the other pool_* settings) are
// honoured; without pool_max_conns the pool holds DefaultMaxConns. Open
// checks the database answers once and does not retry; a database that cannot
// be reached yields an error that is tokens.ErrUnavailable.
func Open(ctx context.Context, databaseURL string, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse PostgreSQL URL: %w", err) // pgx redacts the password
	}
	// When a caller gives up (request timeout, client gone), ask the server to
	// cancel the statement, rather than only dropping the socket: a statement
	// waiting on a lock would otherwise run on, and commit, after the caller
	// was already told it failed.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	if !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, storeErr(ctx, "connect to PostgreSQL", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, storeErr(ctx, "connect to PostgreSQL", err)
	}
	s := &Store{pool: pool}
	if o.Writers > 0 {
		s.group = startWriters(s, o.Writers)
	}
	return s, nil
}

// Migrate brings the schema up to date with the embedded migrations. It holds
// a session-level advisory lock while it works, so replicas that start
// together migrate one at a time.
func (s *Store) Migrate(ctx context.Context) error {
	// Migrations are tracked per schema (goose's table lives in the first
	// schema of search_path), so the lock is per schema too: deployments or
	// tests sharing one database in separate schemas do not wait on each other.
	var schema string
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(current_schema(), '')").Scan(&schema); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(migrationLockID(schema)),
		lock.WithLockTimeout(1, 300), // poll every second, for up to 5 minutes
	)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	dir, err := fs.Sub(migrations.FS, "postgres")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close() // leaves the pool open
	provider, err := goose.NewProvider(goose.DialectPostgres, db, dir,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	return nil
}

// migrationLockID is the advisory lock key for migrating one schema.
func migrationLockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("signin-tokens migrations\x00" + schema))
	return int64(h.Sum64())
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.fail(ctx, "ping", s.pool.Ping(ctx))
}

// Stat returns the connection pool's figures, for metrics.
func (s *Store) Stat() *pgxpool.Stat { return s.pool.Stat() }

// Close lets queued writes finish, then closes the pool, waiting for
// connections in use to be returned.
func (s *Store) Close() error {
	if s.group != nil {
		s.group.close()
	}
	s.pool.Close()
	return nil
}

// tokenColumns are the columns scanToken reads, in its order.
const tokenColumns = `id, user_id, coalesce(org_id, ''), status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at`

func scanToken(row pgx.Row) (tokens.Token, error) {
	var t tokens.Token
	var status string
	err := row.Scan(&t.ID, &t.UserID, &t.OrgID, &status, &t.TicketHash,
		&t.CreatedAt, &t.UpdatedAt, &t.ExpiresAt, &t.AcceptedAt, &t.RevokedAt)
	if err != nil {
		return tokens.Token{}, err
	}
	t.Status = tokens.Status(status)
	// pgx gives timestamptz in the local zone; the domain works in UTC.
	t.CreatedAt, t.UpdatedAt, t.ExpiresAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC(), t.ExpiresAt.UTC()
	t.AcceptedAt, t.RevokedAt = utc(t.AcceptedAt), utc(t.RevokedAt)
	return t, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

const insertTokenSQL = `
INSERT INTO sign_in_tokens (id, user_id, org_id, status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at)
VALUES ($1, $2, nullif($3, ''), $4, $5, $6, $7, $8, $9, $10)`

func insertTokenArgs(t tokens.Token) []any {
	return []any{t.ID, t.UserID, t.OrgID, string(t.Status), t.TicketHash,
		t.CreatedAt, t.UpdatedAt, t.ExpiresAt, t.AcceptedAt, t.RevokedAt}
}

// Create inserts a new token. An id already stored is an error.
func (s *Store) Create(ctx context.Context, t tokens.Token) error {
	if s.group == nil {
		return s.createOne(ctx, t)
	}
	w := &write{ctx: ctx, kind: writeCreate, token: t}
	if err := s.group.do(w); err != nil {
		return err
	}
	if w.alone {
		return s.createOne(ctx, t)
	}
	return w.err
}

func (s *Store) createOne(ctx context.Context, t tokens.Token) error {
	_, err := s.pool.Exec(ctx, insertTokenSQL, insertTokenArgs(t)...)
	return s.fail(ctx, "create token", err)
}

// Get returns the token with the given id, or tokens.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (tokens.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx,
		`SELECT `+tokenColumns+` FROM sign_in_tokens WHERE id = $1`, id))
	return t, s.fail(ctx, "get token", err)
}

// Query is one SQL statement with its arguments.
type Query struct {
	SQL  string
	Args []any
}

// ListQueries returns the two statements List sends for f, as one batch:
// the page of tokens, newest first, and the count of all that match. They
// are exported so the load tool explains the very statements the store
// runs, not a copy.
func ListQueries(f tokens.ListFilter) (page, count Query) {
	var conds []string
	var args []any
	if f.UserID != "" {
		args = append(args, f.UserID)
		conds = append(conds, fmt.Sprintf("user_id = $%d", len(args)))
	}
	if f.Status != "" {
		args = append(args, string(f.Status))
		conds = append(conds, fmt.Sprintf("status = $%d", len(args)))
	}
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = tokens.DefaultListLimit
	}
	page.SQL = fmt.Sprintf(`SELECT %s FROM sign_in_tokens %s
		ORDER BY created_at DESC, id DESC LIMIT $%d OFFSET $%d`,
		tokenColumns, where, len(args)+1, len(args)+2)
	page.Args = append(slices.Clip(args), limit, max(f.Offset, 0))
	return page, Query{SQL: `SELECT count(*) FROM sign_in_tokens ` + where, Args: args}
}

// List returns the tokens matching f, newest first (id breaking ties), and
// how many match in all.
func (s *Store) List(ctx context.Context, f tokens.ListFilter) ([]tokens.Token, int, error) {
	page, count := ListQueries(f)
	// One round trip for the page and the count.
	batch := &pgx.Batch{}
	var list []tokens.Token
	var total int
	batch.Queue(page.SQL, page.Args...).Query(func(rows pgx.Rows) error {
		var err error
		list, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (tokens.Token, error) {
			return scanToken(row)
		})
		return err
	})
	batch.Queue(count.SQL, count.Args...).QueryRow(func(row pgx.Row) error {
		return row.Scan(&total)
	})
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, 0, s.fail(ctx, "list tokens", err)
	}
	return list, total, nil
}

const redeemSQL = `
UPDATE sign_in_tokens
SET status = 'accepted', accepted_at = $3, updated_at = $3
WHERE id = $1 AND status = 'pending' AND ticket_hash = $2 AND expires_at > $3
RETURNING ` + tokenColumns

// Redeem accepts a pending, unexpired token whose ticket hash matches, in one
// conditional UPDATE, so concurrent redemptions cannot both succeed. When
// nothing matched it returns the token as stored and false.
func (s *Store) Redeem(ctx context.Context, id string, ticketHash []byte, now time.Time) (tokens.Token, bool, error) {
	if s.group == nil {
		return s.transition(ctx, "redeem token", id, redeemSQL, id, ticketHash, now)
	}
	w := &write{ctx: ctx, kind: writeRedeem, id: id, hash: ticketHash, now: now}
	if err := s.group.do(w); err != nil {
		return tokens.Token{}, false, err
	}
	if w.alone {
		return s.transition(ctx, "redeem token", id, redeemSQL, id, ticketHash, now)
	}
	return s.orStored(ctx, id, w.token, w.matched, w.err)
}

const revokeSQL = `
UPDATE sign_in_tokens
SET status = 'revoked', revoked_at = $2, updated_at = $2
WHERE id = $1 AND status = 'pending'
RETURNING ` + tokenColumns

// Revoke revokes a pending token, expired or not, in one conditional UPDATE.
// When the token is not pending it returns it as stored and false.
func (s *Store) Revoke(ctx context.Context, id string, now time.Time) (tokens.Token, bool, error) {
	return s.transition(ctx, "revoke token", id, revokeSQL, id, now)
}

// transition is a conditional UPDATE ... RETURNING answered as Redeem and
// Revoke answer: update, then orStored.
func (s *Store) transition(ctx context.Context, op, id, sql string, args ...any) (tokens.Token, bool, error) {
	t, changed, err := s.update(ctx, op, sql, args...)
	return s.orStored(ctx, id, t, changed, err)
}

// update runs a conditional UPDATE ... RETURNING: the token as changed and
// true, or false when no row met the conditions. It reads nothing more: a
// writer runs it and leaves orStored's read to the caller.
//
// A one-row UPDATE holds no lock another waits on, yet it can still be the
// victim of a deadlock: waiting for a row a group of writes holds, it stands
// first in that row's queue, and a second group queued behind it may hold
// what the first group waits for. The victim's statement was rolled back, so
// it is run again, a few times at most.
func (s *Store) update(ctx context.Context, op, sql string, args ...any) (tokens.Token, bool, error) {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		t, err := scanToken(s.pool.QueryRow(ctx, sql, args...))
		switch {
		case err == nil:
			return t, true, nil
		case errors.Is(err, pgx.ErrNoRows):
			return tokens.Token{}, false, nil
		case attempt < attempts && ctx.Err() == nil && isDeadlock(err):
			continue
		}
		return tokens.Token{}, false, s.fail(ctx, op, err)
	}
}

// isDeadlock reports whether err is PostgreSQL's deadlock_detected.
func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}

// orStored finishes a conditional update's outcome: when it changed nothing,
// a plain read says how the token stands (or that it is absent).
func (s *Store) orStored(ctx context.Context, id string, t tokens.Token, changed bool, err error) (tokens.Token, bool, error) {
	switch {
	case err != nil:
		return tokens.Token{}, false, err
	case changed:
		return t, true, nil
	}
	t, err = s.Get(ctx, id)
	if err != nil {
		return tokens.Token{}, false, err
	}
	return t, false, nil
}

// claimKeySQL takes an idempotency key for a token: it inserts the key, or
// takes over a key last used before notBefore ($5). A key in use is left
// alone and no row is affected. Two first uses of one key at once are
// serialized by the key's unique index: the second waits for the first to
// commit, then finds the key in use.
const claimKeySQL = `
INSERT INTO idempotency_keys AS k (key, request_hash, token_id, created_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO UPDATE
SET request_hash = excluded.request_hash, token_id = excluded.token_id, created_at = excluded.created_at
WHERE k.created_at < $5`

// CreateIdempotent inserts t under an idempotency key, in one transaction.
// When the key was used since notBefore, it returns the token created under
// it and false, or tokens.ErrIdempotencyMismatch when requestHash differs
// from the one the key was first used with.
func (s *Store) CreateIdempotent(ctx context.Context, t tokens.Token, key string, requestHash []byte, notBefore time.Time) (tokens.Token, bool, error) {
	const op = "create token idempotently"
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return tokens.Token{}, false, s.fail(ctx, op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // no-op once committed

	if _, err := tx.Exec(ctx, insertTokenSQL, insertTokenArgs(t)...); err != nil {
		return tokens.Token{}, false, s.fail(ctx, op, err)
	}
	claimed, err := tx.Exec(ctx, claimKeySQL, key, requestHash, t.ID, t.CreatedAt, notBefore)
	if err != nil {
		return tokens.Token{}, false, s.fail(ctx, op, err)
	}
	if claimed.RowsAffected() == 1 {
		if err := tx.Commit(ctx); err != nil {
			return tokens.Token{}, false, s.fail(ctx, op, err)
		}
		return t, true, nil
	}

	// The key is in use: answer with its token; the rollback drops t.
	var tokenID string
	var firstHash []byte
	err = tx.QueryRow(ctx, `SELECT token_id, request_hash FROM idempotency_keys WHERE key = $1`, key).
		Scan(&tokenID, &firstHash)
	if err != nil {
		return tokens.Token{}, false, s.fail(ctx, op, err)
	}
	if !bytes.Equal(firstHash, requestHash) {
		return tokens.Token{}, false, tokens.ErrIdempotencyMismatch
	}
	stored, err := scanToken(tx.QueryRow(ctx,
		`SELECT `+tokenColumns+` FROM sign_in_tokens WHERE id = $1`, tokenID))
	if err != nil {
		return tokens.Token{}, false, s.fail(ctx, op, err)
	}
	return stored, false, nil
}

// deleteFinishedSQL deletes at most $2 tokens that expired before $1 or
// finished (accepted or revoked) before $1. SKIP LOCKED lets replicas run it
// at once, each taking rows the others have not.
const deleteFinishedSQL = `
DELETE FROM sign_in_tokens
WHERE id IN (
	SELECT id FROM sign_in_tokens
	WHERE expires_at < $1 OR (status <> 'pending' AND updated_at < $1)
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)`

const deleteOldKeysSQL = `
DELETE FROM idempotency_keys
WHERE key IN (
	SELECT key FROM idempotency_keys
	WHERE created_at < $1
	FOR UPDATE SKIP LOCKED
)`

// DeleteFinished deletes up to limit tokens that expired, or were accepted or
// revoked, before cutoff, and the idempotency keys used before keysCutoff. It
// returns how many tokens it deleted. Several replicas may run it at once.
func (s *Store) DeleteFinished(ctx context.Context, cutoff, keysCutoff time.Time, limit int) (int, error) {
	if _, err := s.pool.Exec(ctx, deleteOldKeysSQL, keysCutoff); err != nil {
		return 0, s.fail(ctx, "delete old idempotency keys", err)
	}
	if limit <= 0 {
		return 0, nil
	}
	deleted, err := s.pool.Exec(ctx, deleteFinishedSQL, cutoff, limit)
	if err != nil {
		return 0, s.fail(ctx, "delete finished tokens", err)
	}
	return int(deleted.RowsAffected()), nil
}

// fail is storeErr for a query of s. After a broken connection it also
// drops the pool's idle connections: they ran over the same network to the
// same server and are most likely dead too, and the pool would otherwise
// hand them to the next requests, which would fail though the database is
// back. A timeout drops nothing: it may be a busy database, not a dead one.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	err = storeErr(ctx, op, err)
	if errors.Is(err, tokens.ErrUnavailable) && !pgconn.Timeout(err) {
		s.pool.Reset()
	}
	return err
}

// storeErr puts err in the domain's terms: no row is tokens.ErrNotFound, a
// database that cannot be reached is tokens.ErrUnavailable, and anything else
// is wrapped with op as an internal error.
func storeErr(ctx context.Context, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return tokens.ErrNotFound
	case ctx.Err() != nil:
		// The caller's context ended, and the driver may report that as a
		// server-side cancel (57014) or a broken connection: the context is
		// the cause. A deadline is the database being too slow; a cancel is
		// the caller leaving.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s: %w: %w", op, tokens.ErrUnavailable, err)
		}
		return fmt.Errorf("%s: %w: %v", op, ctx.Err(), err)
	case unreachable(ctx, err):
		return fmt.Errorf("%s: %w: %w", op, tokens.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// unreachable reports whether err means the database could not be reached or
// the connection was lost, as opposed to a query that failed on its own or a
// caller that gave up.
func unreachable(ctx context.Context, err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03": // cannot_connect_now
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) ||
		pgconn.SafeToRetry(err) || // failed before anything reached the server
		pgconn.Timeout(err) || // includes a pool acquire that ran out of time
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
