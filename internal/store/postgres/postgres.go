// Package postgres keeps sign-in tokens in PostgreSQL, through a pgx pool.
// It is the only package that knows pgx: its errors are translated here into
// the domain's (tokens.ErrNotFound, tokens.ErrUnavailable).
package postgres

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.opentelemetry.io/otel/trace"

	"github.com/signin-tokens/signin-tokens/internal/store/storeerr"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
	"github.com/signin-tokens/signin-tokens/migrations"
)

// Store is a tokens.Store on PostgreSQL.
type Store struct {
	pool  *pgxpool.Pool
	group *writers // nil: every write is its own statement

	requireSync  bool
	health       prober       // the write probe behind Ping
	replication  atomic.Int32 // replicationUnknown, replicationAsync or replicationSync
	unreplicated atomic.Int64 // writes answered ErrUnavailable, their durability unknown

	queue queuePool  // River's own connections, opened for webhooks only
	lease relayLease // the webhook relay's lock, taken for webhooks only
}

// Options tunes a Store beyond what its URL says.
type Options struct {
	// Writers is how many writers send creates and redemptions (see
	// group.go): each sends the writes that queued while it was busy as one
	// transaction. 0 sends every write as its own statement, on the
	// caller's goroutine.
	Writers int
	// TracerProvider, when set, records each statement a writer sends for
	// a group as one span, linked to the span of every write it carries;
	// nil records none.
	TracerProvider trace.TracerProvider

	// RequireSync refuses writes, and readiness, while the primary does not
	// replicate synchronously: synchronous_standby_names is empty, or the
	// service's sessions have synchronous_commit below on (remote_apply
	// counts). Without it, commits acknowledged by the primary alone can be
	// lost on failover (docs/operations.md).
	RequireSync bool
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
	queueCfg := cfg.Copy() // without the hooks below, which serve the API's writes
	// When a caller gives up (request timeout, client gone), ask the server to
	// cancel the statement, rather than only dropping the socket: a statement
	// waiting on a lock would otherwise run on, and commit, after the caller
	// was already told it failed.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	// A commit whose wait for the synchronous standby was canceled succeeds
	// with a warning: see durable.go.
	cfg.ConnConfig.OnNotice = noticeCanceledWait
	cfg.PrepareConn = linkCommitWatch
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
	s := &Store{pool: pool, requireSync: o.RequireSync, queue: queuePool{cfg: queueCfg}}
	if o.Writers > 0 {
		if s.group, err = startWriters(ctx, s, cfg, o.Writers, o.TracerProvider); err != nil {
			pool.Close()
			return nil, storeErr(ctx, "connect to PostgreSQL", err)
		}
	}
	return s, nil
}

// Migrate brings the schema up to date with the embedded migrations. It holds
// a session-level advisory lock while it works, so replicas that start
// together migrate one at a time.
func (s *Store) Migrate(ctx context.Context) error { return s.MigrateTo(ctx, 0) }

// MigrateTo is Migrate up to version only, or to the newest with 0; the load
// tool uses it to measure a release before a migration.
func (s *Store) MigrateTo(ctx context.Context, version int64) error {
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
	up := provider.Up
	if version > 0 {
		up = func(ctx context.Context) ([]*goose.MigrationResult, error) { return provider.UpTo(ctx, version) }
	}
	if _, err := up(ctx); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	return s.migrateQueue(ctx, schema)
}

// migrationLockID is the advisory lock key for migrating one schema.
func migrationLockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("signin-tokens migrations\x00" + schema))
	return int64(h.Sum64())
}

// Stat returns the connection pool's figures, for metrics.
func (s *Store) Stat() *pgxpool.Stat { return s.pool.Stat() }

// Close lets queued writes finish, then closes the pool, waiting for
// connections in use to be returned.
func (s *Store) Close() error {
	if s.group != nil {
		s.group.close()
	}
	s.queue.close()
	s.lease.mu.Lock()
	s.lease.close()
	s.lease.mu.Unlock()
	s.pool.Close()
	return nil
}

// tokenColumns are the columns scanToken reads, in its order.
const tokenColumns = `id, user_id, coalesce(org_id, ''), status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at,
	coalesce(redirect_url, ''), coalesce(metadata::text, ''),
	coalesce(actor::text, ''), coalesce(session_max_duration_seconds, 0)`

func scanToken(row pgx.Row) (tokens.Token, error) {
	var t tokens.Token
	var status, metadata, actor string
	var sessionSeconds int64
	err := row.Scan(&t.ID, &t.UserID, &t.OrgID, &status, &t.TicketHash,
		&t.CreatedAt, &t.UpdatedAt, &t.ExpiresAt, &t.AcceptedAt, &t.RevokedAt,
		&t.RedirectURL, &metadata, &actor, &sessionSeconds)
	if err != nil {
		return tokens.Token{}, err
	}
	t.Status = tokens.Status(status)
	if metadata != "" {
		t.Metadata = []byte(metadata)
	}
	if actor != "" {
		t.Actor = []byte(actor)
	}
	t.SessionMaxDuration = time.Duration(sessionSeconds) * time.Second
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

// insertTokenSQL inserts one token and records its created event, with the
// event context at $15 to $18.
var insertTokenSQL = changeSQL(`
INSERT INTO sign_in_tokens (id, user_id, org_id, status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at,
	redirect_url, metadata, actor, session_max_duration_seconds)
VALUES ($1, $2, nullif($3, ''), $4, $5, $6, $7, $8, $9, $10, nullif($11, ''), nullif($12, '')::jsonb,
	nullif($13, '')::jsonb, nullif($14, 0))`, tokens.VerbCreated, 14, false)

// insertTokenArgs are insertTokenSQL's arguments for t, created under ctx.
func insertTokenArgs(ctx context.Context, t tokens.Token) []any {
	return append([]any{t.ID, t.UserID, t.OrgID, string(t.Status), t.TicketHash,
		t.CreatedAt, t.UpdatedAt, t.ExpiresAt, t.AcceptedAt, t.RevokedAt,
		t.RedirectURL, string(t.Metadata), string(t.Actor), int64(t.SessionMaxDuration / time.Second)},
		eventArgs(ctx)...)
}

// Create inserts a new token. A plain one (no code, no key, nothing to
// revoke) goes through the writers, grouped with others under load; the rest
// is one transaction beside them (see createTx). An id already stored is an
// error.
func (s *Store) Create(ctx context.Context, c tokens.Creation) (tokens.CreateResult, error) {
	if err := s.checkSynchronous(ctx, "create token"); err != nil {
		return tokens.CreateResult{}, err
	}
	if c.Code != nil || c.RevokePrevious || c.Key != nil || c.Token.Kind() != tokens.KindSignIn {
		return s.createTx(ctx, c)
	}
	done := tokens.CreateResult{Token: c.Token, Created: true}
	if s.group == nil {
		return done, s.createOne(ctx, c.Token)
	}
	w := &write{ctx: ctx, kind: writeCreate, create: c.Token}
	if err := s.group.do(w); err != nil {
		return tokens.CreateResult{}, err
	}
	if w.out.alone {
		return done, s.createOne(ctx, c.Token)
	}
	return done, w.out.err
}

// createOne inserts one token as its own statement. A create handed back by
// a group whose commit did land after all (the group could not tell) finds
// its own row: the id is 125 random bits, so a row with this id, user,
// ticket hash and times is this very create, answered as done rather than as
// a conflict.
func (s *Store) createOne(ctx context.Context, t tokens.Token) error {
	ctx = watchCommits(ctx)
	_, err := s.pool.Exec(ctx, insertTokenSQL, insertTokenArgs(ctx, t)...)
	if isConflict(err, "sign_in_tokens_pkey") {
		if stored, getErr := s.Get(ctx, t.ID); getErr == nil && sameCreate(stored, t) {
			return s.durable(ctx, "create token")
		}
	}
	return s.wrote(ctx, "create token", err)
}

const insertCodeSQL = `
INSERT INTO sign_in_token_codes (token_id, code_hash, key_id) VALUES ($1, $2, $3)`

// createTx creates a token with what a plain create lacks, in one
// transaction: the user's pending tokens revoked first (RevokePrevious), the
// token, its code, and its idempotency key, which when already in use rolls
// everything back and answers with the token created under it. Creates with
// a code, a key or RevokePrevious are rare next to plain ones, so they are
// not grouped; so are actor tokens, whose columns the grouped INSERT leaves
// out.
func (s *Store) createTx(ctx context.Context, c tokens.Creation) (tokens.CreateResult, error) {
	const op = "create token"
	t := c.Token
	ctx = watchCommits(ctx)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return tokens.CreateResult{}, s.fail(ctx, op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // no-op once committed

	res := tokens.CreateResult{Token: t, Created: true}
	if c.RevokePrevious {
		rows, err := tx.Query(ctx, revokeUserSQL(t.Kind()), append([]any{t.UserID, t.CreatedAt}, eventArgs(ctx)...)...)
		if res.Revoked, err = collectTokens(rows, err); err != nil {
			return tokens.CreateResult{}, s.fail(ctx, op, err)
		}
	}
	if _, err := tx.Exec(ctx, insertTokenSQL, insertTokenArgs(ctx, t)...); err != nil {
		return tokens.CreateResult{}, s.fail(ctx, op, err)
	}
	if c.Code != nil {
		if _, err := tx.Exec(ctx, insertCodeSQL, t.ID, c.Code.Hash, c.Code.KeyID); err != nil {
			return tokens.CreateResult{}, s.fail(ctx, op, err)
		}
	}
	if c.Key != nil {
		key := c.Key
		claimed, err := tx.Exec(ctx, claimKeySQL, key.Key, key.RequestHash, t.ID, t.CreatedAt, key.NotBefore)
		if err != nil {
			return tokens.CreateResult{}, s.fail(ctx, op, err)
		}
		if claimed.RowsAffected() == 0 {
			// The key is in use: answer with its token; the rollback drops
			// everything above.
			first, err := s.createdBefore(ctx, tx, op, key)
			if err == nil {
				err = s.confirm(ctx)
			}
			return first, err
		}
	}
	if err := s.wrote(ctx, op, tx.Commit(ctx)); err != nil {
		return tokens.CreateResult{}, err
	}
	return res, nil
}

// createdBefore answers a create whose key is in use: the token created
// under it, with its code, or ErrIdempotencyMismatch.
func (s *Store) createdBefore(ctx context.Context, tx pgx.Tx, op string, key *tokens.Idempotency) (tokens.CreateResult, error) {
	stored, err := s.lookupKey(ctx, tx, op, key.Key)
	if err != nil {
		return tokens.CreateResult{}, err
	}
	replay, err := key.Replays(stored)
	switch {
	case err != nil:
		return tokens.CreateResult{}, err
	case !replay: // the claim found the key in use, in this same transaction
		return tokens.CreateResult{}, fmt.Errorf("%s: key in use, yet not recorded", op)
	}
	first, err := scanToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+` FROM sign_in_tokens WHERE id = $1`, stored.TokenID))
	if err != nil {
		return tokens.CreateResult{}, s.fail(ctx, op, err)
	}
	res := tokens.CreateResult{Token: first}
	var code tokens.StoredCode
	err = tx.QueryRow(ctx, `SELECT code_hash, key_id FROM sign_in_token_codes WHERE token_id = $1`, first.ID).
		Scan(&code.Hash, &code.KeyID)
	switch {
	case err == nil:
		res.Code = &code
	case !errors.Is(err, pgx.ErrNoRows):
		return tokens.CreateResult{}, s.fail(ctx, op, err)
	}
	return res, nil
}

// collectTokens reads rows of tokenColumns, newest first.
func collectTokens(rows pgx.Rows, err error) ([]tokens.Token, error) {
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tokens.Token, error) { return scanToken(row) })
	tokens.SortNewestFirst(list)
	return list, err
}

// revokeUserSQL revokes every pending token of kind of user $1 at $2, and
// records their revoked events with the event context at $3 to $6.
func revokeUserSQL(kind tokens.Kind) string {
	return changeSQL(`
UPDATE sign_in_tokens
SET status = 'revoked', revoked_at = $2, updated_at = $2
WHERE user_id = $1 AND status = 'pending' AND `+kindCondition(kind), tokens.VerbRevoked, 2, false)
}

// kindCondition selects the tokens of one kind by their ids' prefix. The
// prefix is written into the statement, not passed as a parameter, so that
// the planner can use the partial indexes on it.
func kindCondition(kind tokens.Kind) string {
	return "substr(id, 1, 4) = '" + kind.IDPrefix() + "'"
}

// RevokeUser revokes every pending token of a user, expired ones included,
// in one statement, and returns them newest first.
func (s *Store) RevokeUser(ctx context.Context, kind tokens.Kind, userID string, now time.Time) ([]tokens.Token, error) {
	const op = "revoke a user's tokens"
	if err := s.checkSynchronous(ctx, op); err != nil {
		return nil, err
	}
	ctx = watchCommits(ctx)
	rows, err := s.pool.Query(ctx, revokeUserSQL(kind), append([]any{userID, now}, eventArgs(ctx)...)...)
	list, err := collectTokens(rows, err)
	if err := s.wrote(ctx, op, err); err != nil {
		return nil, err
	}
	return list, nil
}

// codeCandidatesSQL locks the codes of user $1 that may still be tried:
// their token pending and unexpired at $2, fewer than $3 wrong attempts.
// Concurrent attempts for one user queue on these row locks, and each sees
// the counts the one before it left, so no code is compared more than $3
// times in all, across any number of replicas.
const codeCandidatesSQL = `
SELECT c.token_id, c.code_hash, c.key_id
FROM sign_in_tokens AS t JOIN sign_in_token_codes AS c ON c.token_id = t.id
WHERE t.user_id = $1 AND t.status = 'pending' AND t.expires_at > $2 AND c.attempts < $3
ORDER BY c.token_id
FOR UPDATE OF c`

// finishedCodesSQL reads the user's newest coded tokens that can no longer
// be redeemed: finished, or pending past their expiry.
const finishedCodesSQL = `
SELECT ` + tokenColumns + `, code_hash, key_id
FROM sign_in_tokens JOIN sign_in_token_codes ON token_id = id
WHERE user_id = $1 AND (status <> 'pending' OR expires_at <= $2)
ORDER BY created_at DESC, id DESC
LIMIT $3`

// RedeemCode redeems by one-time code, in one transaction; see
// tokens.Store.
func (s *Store) RedeemCode(ctx context.Context, r tokens.CodeRedemption) (tokens.Token, tokens.CodeOutcome, error) {
	const op = "redeem code"
	if err := s.checkSynchronous(ctx, op); err != nil {
		return tokens.Token{}, 0, err
	}
	ctx = watchCommits(ctx)
	fail := func(err error) (tokens.Token, tokens.CodeOutcome, error) {
		return tokens.Token{}, 0, s.wrote(ctx, op, err)
	}
	if r.Key != nil {
		// Before any code is compared: a key cannot buy uncounted guesses.
		if t, outcome, err := s.codeReplay(ctx, op, r.Key); err != nil || outcome == tokens.CodeReplayed {
			return t, outcome, err
		}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // no-op once committed

	rows, err := tx.Query(ctx, codeCandidatesSQL, r.UserID, r.Now, r.MaxAttempts)
	candidates, err := collectCodes(rows, err)
	if err != nil {
		return fail(err)
	}
	var ids []string
	for _, c := range candidates {
		ids = append(ids, c.tokenID)
		if !r.Matches(c.tokenID, c.code) {
			continue
		}
		t, err := scanToken(tx.QueryRow(ctx, redeemCodeSQL, append([]any{c.tokenID, r.Now}, eventArgs(ctx)...)...))
		switch {
		case errors.Is(err, pgx.ErrNoRows): // a ticket redemption or a revoke got there first
			t, err := s.Get(ctx, c.tokenID)
			return t, tokens.CodeFinished, err
		case err != nil:
			return fail(err)
		}
		if r.Key != nil {
			claimed, err := tx.Exec(ctx, claimKeySQL, r.Key.Key, r.Key.RequestHash, t.ID, r.Now, r.Key.NotBefore)
			if err != nil {
				return fail(err)
			}
			if claimed.RowsAffected() == 0 {
				// The key was taken meanwhile: undo, and answer as its
				// record says.
				tx.Rollback(ctx)
				return s.codeReplay(ctx, op, r.Key)
			}
		}
		if err := s.wrote(ctx, op, tx.Commit(ctx)); err != nil {
			return tokens.Token{}, 0, err
		}
		return t, tokens.CodeAccepted, nil
	}

	// No code that may be tried matched: maybe that of a finished token.
	rows, err = tx.Query(ctx, finishedCodesSQL, r.UserID, r.Now, tokens.MaxFinishedCodesCompared)
	if err != nil {
		return fail(err)
	}
	finished, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (codedToken, error) {
		var c codedToken
		t, err := scanToken(scanPrefix{row, &c.code.Hash, &c.code.KeyID})
		c.token = t
		return c, err
	})
	if err != nil {
		return fail(err)
	}
	for _, c := range finished {
		if r.Matches(c.token.ID, c.code) {
			return c.token, tokens.CodeFinished, nil
		}
	}
	if len(ids) == 0 {
		return tokens.Token{}, tokens.CodeNoneLeft, nil
	}
	// A wrong code: counted against every candidate, and kept although the
	// request fails.
	if _, err := tx.Exec(ctx, countWrongCodeSQL, append([]any{ids, r.Now}, eventArgs(ctx)...)...); err != nil {
		return fail(err)
	}
	if err := s.wrote(ctx, op, tx.Commit(ctx)); err != nil {
		return tokens.Token{}, 0, err
	}
	return tokens.Token{}, tokens.CodeWrong, nil
}

// codeReplay answers a code redemption from its key's record: the token a
// successful first attempt accepted, ErrIdempotencyMismatch for a key used
// by another request, or no outcome when the key is free.
func (s *Store) codeReplay(ctx context.Context, op string, key *tokens.Idempotency) (tokens.Token, tokens.CodeOutcome, error) {
	t, replayed, err := s.replay(ctx, op, key)
	if err != nil || !replayed {
		return tokens.Token{}, 0, err
	}
	return t, tokens.CodeReplayed, nil
}

var redeemCodeSQL = changeSQL(`
UPDATE sign_in_tokens
SET status = 'accepted', accepted_at = $2, updated_at = $2
WHERE id = $1 AND status = 'pending' AND expires_at > $2`, tokens.VerbAccepted, 2, false)

// countWrongCodeSQL counts a wrong code against the codes of the tokens $1
// at $2, and records a code_failed event for each, with the event context
// at $3 to $6.
var countWrongCodeSQL = `
WITH counted AS (
	UPDATE sign_in_token_codes SET attempts = attempts + 1 WHERE token_id = ANY($1) RETURNING token_id
), recorded AS (` + eventInsert("FROM sign_in_tokens AS c JOIN counted ON counted.token_id = c.id",
	tokens.VerbCodeFailed, "$2::timestamptz", "NULL", ctxParams(2)) + `)
SELECT count(*) FROM counted`

// codeCandidate is a code that may be tried.
type codeCandidate struct {
	tokenID string
	code    tokens.StoredCode
}

// codedToken is a token and its stored code.
type codedToken struct {
	token tokens.Token
	code  tokens.StoredCode
}

func collectCodes(rows pgx.Rows, err error) ([]codeCandidate, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (codeCandidate, error) {
		var c codeCandidate
		return c, row.Scan(&c.tokenID, &c.code.Hash, &c.code.KeyID)
	})
}

// scanPrefix is a row whose tokenColumns come first and more columns after.
type scanPrefix struct {
	row   pgx.Row
	extra *[]byte
	key   *string
}

func (p scanPrefix) Scan(dest ...any) error { return p.row.Scan(append(dest, p.extra, p.key)...) }

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
	conds := []string{kindCondition(cmp.Or(f.Kind, tokens.KindSignIn))}
	var args []any
	if f.UserID != "" {
		args = append(args, f.UserID)
		conds = append(conds, fmt.Sprintf("user_id = $%d", len(args)))
	}
	if f.Status != "" {
		args = append(args, string(f.Status))
		conds = append(conds, fmt.Sprintf("status = $%d", len(args)))
	}
	where := "WHERE " + strings.Join(conds, " AND ")
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

// redeemUpdate accepts token $1 if its ticket hash is $2 and it is pending
// and unexpired at $3.
const redeemUpdate = `
UPDATE sign_in_tokens
SET status = 'accepted', accepted_at = $3, updated_at = $3
WHERE id = $1 AND status = 'pending' AND ticket_hash = $2 AND expires_at > $3`

// Redeem accepts a pending, unexpired token whose ticket hash matches, in one
// conditional UPDATE, so concurrent redemptions cannot both succeed. When
// nothing matched it returns the token as stored and tokens.Unchanged. A key
// is recorded in the same statement as the change.
func (s *Store) Redeem(ctx context.Context, id string, ticketHash []byte, now time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	const op = "redeem token"
	if err := s.checkSynchronous(ctx, op); err != nil {
		return tokens.Token{}, tokens.Unchanged, err
	}
	if s.group == nil {
		return s.transition(ctx, op, id, key, redeemSQL, redeemKeyedSQL, redeemArgs(ctx, id, ticketHash, now)...)
	}
	w := &write{ctx: ctx, kind: writeRedeem, redeem: redemption{id: id, hash: ticketHash, now: now, key: key}}
	if err := s.group.do(w); err != nil {
		return tokens.Token{}, tokens.Unchanged, err
	}
	switch {
	case w.out.alone:
		return s.transition(ctx, op, id, key, redeemSQL, redeemKeyedSQL, redeemArgs(ctx, id, ticketHash, now)...)
	case w.out.err != nil:
		return tokens.Token{}, tokens.Unchanged, w.out.err
	case w.out.matched:
		return w.out.token, tokens.Changed, nil
	}
	return s.unchanged(ctx, op, id, key)
}

// revokeUpdate revokes token $1 at $2 if it is pending.
const revokeUpdate = `
UPDATE sign_in_tokens
SET status = 'revoked', revoked_at = $2, updated_at = $2
WHERE id = $1 AND status = 'pending'`

// Revoke revokes a pending token, expired or not, in one conditional UPDATE.
// When the token is not pending it returns it as stored and
// tokens.Unchanged. A key is recorded in the same statement as the change.
func (s *Store) Revoke(ctx context.Context, id string, now time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	if err := s.checkSynchronous(ctx, "revoke token"); err != nil {
		return tokens.Token{}, tokens.Unchanged, err
	}
	return s.transition(ctx, "revoke token", id, key, revokeSQL, revokeKeyedSQL, append([]any{id, now}, eventArgs(ctx)...)...)
}

// The statements of Redeem and Revoke: each records its event, and the
// keyed ones the idempotency key, in the statement of the change. A key
// already stored fails the statement on the key's primary key, and then
// nothing changed.
var (
	redeemSQL      = changeSQL(redeemUpdate, tokens.VerbAccepted, 3, false)
	redeemKeyedSQL = changeSQL(redeemUpdate, tokens.VerbAccepted, 3, true)
	revokeSQL      = changeSQL(revokeUpdate, tokens.VerbRevoked, 2, false)
	revokeKeyedSQL = changeSQL(revokeUpdate, tokens.VerbRevoked, 2, true)
)

// redeemArgs are redeemSQL's arguments, for a redemption under ctx.
func redeemArgs(ctx context.Context, id string, hash []byte, now time.Time) []any {
	return append([]any{id, hash, now}, eventArgs(ctx)...)
}

// transition runs a conditional UPDATE ... RETURNING, plain or, with a key,
// keyed, and answers as Redeem and Revoke answer.
func (s *Store) transition(ctx context.Context, op, id string, key *tokens.Idempotency, plain, keyed string, args ...any) (tokens.Token, tokens.Change, error) {
	if key == nil {
		t, changed, err := s.update(ctx, op, plain, args...)
		switch {
		case err != nil:
			return tokens.Token{}, tokens.Unchanged, err
		case changed:
			return t, tokens.Changed, nil
		}
		return s.unchanged(ctx, op, id, nil)
	}
	args = append(args, key.Key, key.RequestHash)
	const attempts = 3
	for attempt := 1; ; attempt++ {
		t, changed, err := s.update(ctx, op, keyed, args...)
		switch {
		case changed:
			return t, tokens.Changed, nil
		case err == nil:
			return s.unchanged(ctx, op, id, key)
		case !isKeyConflict(err):
			return tokens.Token{}, tokens.Unchanged, err
		}
		// The key is recorded already: for this request (a retry that
		// raced the first attempt), for another one, or long enough ago
		// to be free again, and then it is taken over.
		t, replayed, err := s.replay(ctx, op, key)
		switch {
		case err != nil:
			return tokens.Token{}, tokens.Unchanged, err
		case replayed:
			return t, tokens.Replayed, nil
		case attempt == attempts:
			return tokens.Token{}, tokens.Unchanged, fmt.Errorf("%s: idempotency key still taken after %d attempts", op, attempts)
		}
		if _, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE key = $1 AND created_at < $2`,
			key.Key, key.NotBefore); err != nil {
			return tokens.Token{}, tokens.Unchanged, s.fail(ctx, op, err)
		}
	}
}

// unchanged answers a change that changed nothing: a retry of the request
// that made it, under its key, gets the token as that request left it; a
// key used for another request is a mismatch; otherwise the token is as
// stored.
func (s *Store) unchanged(ctx context.Context, op, id string, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	if key != nil {
		t, replayed, err := s.replay(ctx, op, key)
		switch {
		case err != nil:
			return tokens.Token{}, tokens.Unchanged, err
		case replayed:
			return t, tokens.Replayed, nil
		}
	}
	return s.stored(ctx, id, tokens.Unchanged)
}

// replay reads key's record: when the key was used for this same request,
// it returns the token that request left and true; when for another one,
// tokens.ErrIdempotencyMismatch; when the key is free, false.
func (s *Store) replay(ctx context.Context, op string, key *tokens.Idempotency) (tokens.Token, bool, error) {
	stored, err := s.lookupKey(ctx, s.pool, op, key.Key)
	if err != nil {
		return tokens.Token{}, false, err
	}
	if replay, err := key.Replays(stored); err != nil || !replay {
		return tokens.Token{}, false, err
	}
	t, err := s.Get(ctx, stored.TokenID)
	if err == nil {
		err = s.confirm(ctx)
	}
	return t, err == nil, err
}

// stored reads a token for an outcome that changed nothing now.
func (s *Store) stored(ctx context.Context, id string, change tokens.Change) (tokens.Token, tokens.Change, error) {
	t, err := s.Get(ctx, id)
	if err != nil {
		return tokens.Token{}, tokens.Unchanged, err
	}
	return t, change, nil
}

// rowQuerier is what lookupKey needs of the pool or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// lookupKey returns the record of an idempotency key, read through q, or nil.
func (s *Store) lookupKey(ctx context.Context, q rowQuerier, op, key string) (*tokens.StoredKey, error) {
	var k tokens.StoredKey
	err := q.QueryRow(ctx, `SELECT request_hash, token_id, created_at FROM idempotency_keys WHERE key = $1`, key).
		Scan(&k.RequestHash, &k.TokenID, &k.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return &k, nil
}

// sameCreate reports whether stored is what creating t wrote.
func sameCreate(stored, t tokens.Token) bool {
	return stored.UserID == t.UserID && stored.OrgID == t.OrgID && bytes.Equal(stored.TicketHash, t.TicketHash) &&
		stored.CreatedAt.Equal(t.CreatedAt) && stored.ExpiresAt.Equal(t.ExpiresAt)
}

// isKeyConflict reports whether err is a second record of one idempotency key.
func isKeyConflict(err error) bool { return isConflict(err, "idempotency_keys_pkey") }

// isConflict reports whether err is a unique violation of the constraint.
func isConflict(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// update runs a conditional UPDATE ... RETURNING: the token as changed and
// true, or false when no row met the conditions.
//
// A one-row UPDATE holds no lock another waits on, yet it can still be the
// victim of a deadlock: waiting for a row another replica's transaction
// holds, it stands first in that row's queue, and a transaction queued
// behind it may hold what the first waits for. The victim's statement was
// rolled back, so it is run again, a few times at most.
func (s *Store) update(ctx context.Context, op, sql string, args ...any) (tokens.Token, bool, error) {
	const attempts = 3
	ctx = watchCommits(ctx)
	for attempt := 1; ; attempt++ {
		t, err := scanToken(s.pool.QueryRow(ctx, sql, args...))
		switch {
		case err == nil:
			if err := s.durable(ctx, op); err != nil {
				return tokens.Token{}, false, err
			}
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

// deleteFinishedSQL deletes at most $2 tokens that expired before $1,
// whatever their status, found by the expires_at index: no index covers the
// columns a redemption changes, so that redemptions stay HOT updates
// (migration 00009). SKIP LOCKED lets replicas run it at once, each taking
// rows the others have not.
const deleteFinishedSQL = `
DELETE FROM sign_in_tokens
WHERE id IN (
	SELECT id FROM sign_in_tokens
	WHERE expires_at < $1
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)`

const deleteOldKeysSQL = `
DELETE FROM idempotency_keys
WHERE key IN (
	SELECT key FROM idempotency_keys
	WHERE created_at < $1
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)`

// DeleteFinished deletes up to limit tokens that expired before cutoff,
// pending, accepted or revoked, and returns how many it deleted. Several
// replicas may run it at once.
func (s *Store) DeleteFinished(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "delete finished tokens", deleteFinishedSQL, cutoff, limit)
}

// DeleteIdempotencyKeys deletes up to limit idempotency keys used before
// cutoff, and returns how many it deleted. Several replicas may run it at
// once.
func (s *Store) DeleteIdempotencyKeys(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "delete old idempotency keys", deleteOldKeysSQL, cutoff, limit)
}

// RetentionQueries are the statements the retention sweep sends, one batch
// of limit each, for cutoff: tokens, idempotency keys, events. Exported so
// the load tool explains the very statements the store runs.
func RetentionQueries(cutoff time.Time, limit int) []Query {
	return []Query{{deleteFinishedSQL, []any{cutoff, limit}}, {deleteOldKeysSQL, []any{cutoff, limit}},
		{deleteEventsSQL, []any{cutoff, limit}}}
}

func (s *Store) deleteBatch(ctx context.Context, op, sql string, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	deleted, err := s.pool.Exec(ctx, sql, cutoff, limit)
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	return int(deleted.RowsAffected()), nil
}

// fail is storeErr for a query of s. After a broken connection it also
// resets the pools: their idle connections ran over the same network to the
// same server and are most likely dead too, and would otherwise be handed to
// the next requests, which would fail though the database is back. Nothing
// else resets them: not a timeout or a cancel (a busy database, or a caller
// that left: the connection is fine), not "too many connections" or a failed
// dial (no connection was made, and closing the healthy ones would only add
// to the load).
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if err != nil && unreachable(err) {
		s.health.forget() // readiness probes afresh
	}
	if broken(err) {
		s.pool.Reset()
		if s.group != nil {
			s.group.pool.Reset()
		}
	}
	return storeErr(ctx, op, err)
}

// broken reports whether err means an established connection was lost: the
// server ended the session (shutdown, a terminated backend) or the network
// dropped it.
func broken(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "08006", "08003", "08007", // admin or crash shutdown; connection failure, gone, unknown
			"25006": // read_only_sql_transaction: a standby, or a demoted primary; reconnect to the one that takes writes
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// storeErr puts err in the domain's terms by the stores' one rule.
func storeErr(ctx context.Context, op string, err error) error {
	return storeerr.Translate(ctx, driver{}, op, err)
}

// driver tells storeerr what pgx's errors mean.
type driver struct{}

func (driver) NoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

func (driver) Unreachable(err error) bool { return unreachable(err) }

// unreachable reports whether err means the database could not be reached or
// the connection was lost, as opposed to a query that failed on its own or a
// caller that gave up.
func unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now
			pgErr.Code == "25006": // read_only_sql_transaction: connected to a server that takes no writes
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
