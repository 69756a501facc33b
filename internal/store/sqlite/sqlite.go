// Package sqlite keeps sign-in tokens in an SQLite file, through the pure-Go
// modernc.org/sqlite driver. It suits a single instance; replicas need the
// PostgreSQL store. Timestamps are stored as milliseconds since the epoch.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/signin-tokens/signin-tokens/internal/store/storeerr"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
	"github.com/signin-tokens/signin-tokens/migrations"
)

// Store is a tokens.Store on SQLite.
type Store struct {
	db    *sql.DB // reads, which WAL lets run beside the writer
	write *sql.DB // every write transaction, on writerConns connections
	hot   hotStatements
	dsn   string // for River's own pool (QueueDriver)

	queueMu sync.Mutex
	queue   *sql.DB // River's pool, opened for webhooks only
}

// writerConns is how many connections write. SQLite runs one writer at a
// time; a second connection that wants to write sleeps in the busy handler
// (1 ms, then 2, 5, 10, ... up to 100 ms a try) until the first commits,
// while one connection makes writers queue in the pool and go in turn
// without sleeping (docs/benchmarks.md, "SQLite").
const writerConns = 1

var _ tokens.Store = (*Store)(nil)

// connParams are set on every connection the pool opens. WAL lets readers
// run alongside the one writer; busy_timeout makes a writer wait its turn
// instead of failing; _txlock=immediate takes the write lock at BEGIN, so a
// transaction never fails half-way when upgrading from read to write.
var connParams = url.Values{
	"_pragma": {
		"busy_timeout(5000)",
		"journal_mode(WAL)",
		"synchronous(NORMAL)",
		"foreign_keys(1)",
	},
	"_txlock": {"immediate"},
}

// Open opens, creating if need be, the database file at path and its
// parent directory.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open SQLite: no database file given")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open SQLite: %w", err)
	}
	s := &Store{dsn: DSN(path)}
	for _, db := range []**sql.DB{&s.write, &s.db} {
		var err error
		if *db, err = sql.Open("sqlite", s.dsn); err != nil {
			s.Close()
			return nil, fmt.Errorf("open SQLite %s: %w", path, err)
		}
	}
	s.write.SetMaxOpenConns(writerConns)
	s.write.SetMaxIdleConns(writerConns)
	// The writer first: its connection sets journal_mode, for the file.
	for _, db := range []*sql.DB{s.write, s.db} {
		if err := db.PingContext(ctx); err != nil {
			s.Close()
			return nil, storeErr(ctx, "open SQLite "+path, err)
		}
	}
	return s, nil
}

// Migrate brings the schema up to date with the embedded migrations.
func (s *Store) Migrate(ctx context.Context) error {
	dir, err := fs.Sub(migrations.FS, "sqlite")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectSQLite3, s.write, dir, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return storeErr(ctx, "migrate", err)
	}
	return s.migrateQueue(ctx)
}

// Ping reports whether the database file can be read.
func (s *Store) Ping(ctx context.Context) error {
	// A query, not db.PingContext: it reads the file, not only a pooled
	// connection. count(*) answers one row even before any table exists.
	var tables int
	return storeErr(ctx, "ping", s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables))
}

// Stats returns the connection pools' figures, readers' and writer's
// added up, for metrics.
func (s *Store) Stats() sql.DBStats {
	r, w := s.db.Stats(), s.write.Stats()
	if r.MaxOpenConnections > 0 { // 0, the readers' default, is no limit
		r.MaxOpenConnections += w.MaxOpenConnections
	}
	r.OpenConnections += w.OpenConnections
	r.InUse += w.InUse
	r.Idle += w.Idle
	r.WaitCount += w.WaitCount
	r.WaitDuration += w.WaitDuration
	r.MaxIdleClosed += w.MaxIdleClosed
	r.MaxIdleTimeClosed += w.MaxIdleTimeClosed
	r.MaxLifetimeClosed += w.MaxLifetimeClosed
	return r
}

// Close closes the database, River's pool included.
func (s *Store) Close() error {
	s.queueMu.Lock()
	if s.queue != nil {
		s.queue.Close()
	}
	s.queueMu.Unlock()
	s.hot.close()
	var errs []error
	for _, db := range []*sql.DB{s.write, s.db} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

// tokenColumns are the columns scanToken reads, in its order.
const tokenColumns = `id, user_id, coalesce(org_id, ''), status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at,
	coalesce(redirect_url, ''), coalesce(metadata, ''),
	coalesce(actor, ''), coalesce(session_max_duration_seconds, 0)`

func scanToken(row interface{ Scan(...any) error }) (tokens.Token, error) {
	var t tokens.Token
	var status, metadata, actor string
	var created, updated, expires, sessionSeconds int64
	var accepted, revoked sql.NullInt64
	err := row.Scan(&t.ID, &t.UserID, &t.OrgID, &status, &t.TicketHash,
		&created, &updated, &expires, &accepted, &revoked,
		&t.RedirectURL, &metadata, &actor, &sessionSeconds)
	if err != nil {
		return tokens.Token{}, err
	}
	if metadata != "" {
		t.Metadata = []byte(metadata)
	}
	if actor != "" {
		t.Actor = []byte(actor)
	}
	t.SessionMaxDuration = time.Duration(sessionSeconds) * time.Second
	t.Status = tokens.Status(status)
	t.CreatedAt, t.UpdatedAt, t.ExpiresAt = fromMillis(created), fromMillis(updated), fromMillis(expires)
	t.AcceptedAt, t.RevokedAt = fromNullMillis(accepted), fromNullMillis(revoked)
	return t, nil
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func fromNullMillis(ms sql.NullInt64) *time.Time {
	if !ms.Valid {
		return nil
	}
	t := fromMillis(ms.Int64)
	return &t
}

// millis is how a timestamp is stored; nil stays NULL.
func millis(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

const insertTokenSQL = `
INSERT INTO sign_in_tokens (id, user_id, org_id, status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at,
	redirect_url, metadata, actor, session_max_duration_seconds)
VALUES (?, ?, nullif(?, ''), ?, ?, ?, ?, ?, ?, ?, nullif(?, ''), nullif(?, ''), nullif(?, ''), nullif(?, 0))`

func insertTokenArgs(t tokens.Token) []any {
	return []any{t.ID, t.UserID, t.OrgID, string(t.Status), t.TicketHash,
		t.CreatedAt.UnixMilli(), t.UpdatedAt.UnixMilli(), t.ExpiresAt.UnixMilli(),
		millis(t.AcceptedAt), millis(t.RevokedAt),
		t.RedirectURL, string(t.Metadata), string(t.Actor), int64(t.SessionMaxDuration / time.Second)}
}

// Create inserts a new token; with a code, a key or RevokePrevious, in one
// transaction with them (see tokens.Store). An id already stored is an
// error.
func (s *Store) Create(ctx context.Context, c tokens.Creation) (tokens.CreateResult, error) {
	const op = "create token"
	t := c.Token
	res := tokens.CreateResult{Token: t, Created: true}
	tx, err := s.begin(ctx) // BEGIN IMMEDIATE: the one writer from here on
	if err != nil {
		return tokens.CreateResult{}, storeErr(ctx, op, err)
	}
	defer tx.Rollback() // no-op once committed

	if c.RevokePrevious {
		if res.Revoked, err = queryTokens(ctx, tx, revokeUserSQL(t.Kind()), t.UserID, t.CreatedAt.UnixMilli()); err != nil {
			return tokens.CreateResult{}, storeErr(ctx, op, err)
		}
		for _, r := range res.Revoked {
			if err := recordEvent(ctx, tx, tokens.VerbRevoked, r.ID, r.UpdatedAt, ""); err != nil {
				return tokens.CreateResult{}, storeErr(ctx, op, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, insertTokenSQL, insertTokenArgs(t)...); err != nil {
		return tokens.CreateResult{}, storeErr(ctx, op, err)
	}
	if err := recordEvent(ctx, tx, tokens.VerbCreated, t.ID, t.CreatedAt, ""); err != nil {
		return tokens.CreateResult{}, storeErr(ctx, op, err)
	}
	if c.Code != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sign_in_token_codes (token_id, code_hash, key_id) VALUES (?, ?, ?)`,
			t.ID, c.Code.Hash, c.Code.KeyID); err != nil {
			return tokens.CreateResult{}, storeErr(ctx, op, err)
		}
	}
	if c.Key != nil {
		claimed, err := s.claimKey(ctx, tx, *c.Key, t.ID, t.CreatedAt)
		if err != nil {
			return tokens.CreateResult{}, storeErr(ctx, op, err)
		}
		if !claimed {
			// The key is in use: answer with its token; the rollback drops
			// everything above.
			return s.createdBefore(ctx, tx, op, c.Key)
		}
	}
	if err := tx.Commit(); err != nil {
		return tokens.CreateResult{}, storeErr(ctx, op, err)
	}
	return res, nil
}

// createdBefore answers a create whose key is in use: the token created
// under it, with its code, or ErrIdempotencyMismatch.
func (s *Store) createdBefore(ctx context.Context, tx writeTx, op string, key *tokens.Idempotency) (tokens.CreateResult, error) {
	stored, err := lookupKey(ctx, tx, key.Key)
	if err != nil {
		return tokens.CreateResult{}, storeErr(ctx, op, err)
	}
	replay, err := key.Replays(stored)
	switch {
	case err != nil:
		return tokens.CreateResult{}, err
	case !replay: // the claim found the key in use, in this same transaction
		return tokens.CreateResult{}, fmt.Errorf("%s: key in use, yet not recorded", op)
	}
	first, _, err := s.stored(ctx, tx, stored.TokenID, tokens.Replayed)
	if err != nil {
		return tokens.CreateResult{}, err
	}
	res := tokens.CreateResult{Token: first}
	var code tokens.StoredCode
	err = tx.QueryRowContext(ctx, `SELECT code_hash, key_id FROM sign_in_token_codes WHERE token_id = ?`, first.ID).
		Scan(&code.Hash, &code.KeyID)
	switch {
	case err == nil:
		res.Code = &code
	case !errors.Is(err, sql.ErrNoRows):
		return tokens.CreateResult{}, storeErr(ctx, op, err)
	}
	return res, nil
}

// queryTokens runs a query answering rows of tokenColumns, and returns them
// newest first.
func queryTokens(ctx context.Context, q querier, query string, args ...any) ([]tokens.Token, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []tokens.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, t)
	}
	tokens.SortNewestFirst(list)
	return list, rows.Err()
}

// revokeUserSQL revokes every pending token of kind of user ?1 at ?2.
func revokeUserSQL(kind tokens.Kind) string {
	return `
UPDATE sign_in_tokens
SET status = 'revoked', revoked_at = ?2, updated_at = ?2
WHERE user_id = ?1 AND status = 'pending' AND ` + kindCondition(kind) + `
RETURNING ` + tokenColumns
}

// kindCondition selects the tokens of one kind by their ids' prefix,
// written into the statement so the planner can use the partial indexes.
func kindCondition(kind tokens.Kind) string {
	return "substr(id, 1, 4) = '" + kind.IDPrefix() + "'"
}

// RevokeUser revokes every pending token of a user, expired ones included,
// in one statement, and returns them newest first.
func (s *Store) RevokeUser(ctx context.Context, kind tokens.Kind, userID string, now time.Time) ([]tokens.Token, error) {
	const op = "revoke a user's tokens"
	tx, err := s.begin(ctx) // BEGIN IMMEDIATE
	if err != nil {
		return nil, storeErr(ctx, op, err)
	}
	defer tx.Rollback() // no-op once committed
	list, err := queryTokens(ctx, tx, revokeUserSQL(kind), userID, now.UnixMilli())
	if err != nil {
		return nil, storeErr(ctx, op, err)
	}
	for _, t := range list {
		if err := recordEvent(ctx, tx, tokens.VerbRevoked, t.ID, now, ""); err != nil {
			return nil, storeErr(ctx, op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, storeErr(ctx, op, err)
	}
	return list, nil
}

// codeCandidatesSQL reads the codes of user ?1 that may still be tried:
// their token pending and unexpired at ?2, fewer than ?3 wrong attempts.
const codeCandidatesSQL = `
SELECT c.token_id, c.code_hash, c.key_id
FROM sign_in_tokens AS t JOIN sign_in_token_codes AS c ON c.token_id = t.id
WHERE t.user_id = ?1 AND t.status = 'pending' AND t.expires_at > ?2 AND c.attempts < ?3
ORDER BY c.token_id`

// finishedCodesSQL reads the user's newest coded tokens that can no longer
// be redeemed: finished, or pending past their expiry.
const finishedCodesSQL = `
SELECT ` + tokenColumns + `, code_hash, key_id
FROM sign_in_tokens JOIN sign_in_token_codes ON token_id = id
WHERE user_id = ?1 AND (status <> 'pending' OR expires_at <= ?2)
ORDER BY created_at DESC, id DESC
LIMIT ?3`

const redeemCodeSQL = `
UPDATE sign_in_tokens
SET status = 'accepted', accepted_at = ?2, updated_at = ?2
WHERE id = ?1 AND status = 'pending' AND expires_at > ?2
RETURNING ` + tokenColumns

// RedeemCode redeems by one-time code, in one transaction. SQLite has one
// writer at a time and the transaction takes the write lock at BEGIN, so
// attempts for one user (for any user) run one after another, each seeing
// the counts the one before it left.
func (s *Store) RedeemCode(ctx context.Context, r tokens.CodeRedemption) (tokens.Token, tokens.CodeOutcome, error) {
	const op = "redeem code"
	fail := func(err error) (tokens.Token, tokens.CodeOutcome, error) {
		return tokens.Token{}, 0, storeErr(ctx, op, err)
	}
	tx, err := s.begin(ctx) // BEGIN IMMEDIATE
	if err != nil {
		return fail(err)
	}
	defer tx.Rollback() // no-op once committed

	if r.Key != nil {
		// Before any code is compared: a key cannot buy uncounted guesses.
		stored, err := lookupKey(ctx, tx, r.Key.Key)
		if err != nil {
			return fail(err)
		}
		replay, err := r.Key.Replays(stored)
		switch {
		case err != nil:
			return tokens.Token{}, 0, err
		case replay:
			t, _, err := s.stored(ctx, tx, stored.TokenID, tokens.Replayed)
			return t, tokens.CodeReplayed, err
		}
	}
	candidates, err := s.codeCandidates(ctx, tx, r)
	if err != nil {
		return fail(err)
	}
	for _, c := range candidates {
		if !r.Matches(c.tokenID, c.code) {
			continue
		}
		t, err := scanToken(tx.QueryRowContext(ctx, redeemCodeSQL, c.tokenID, r.Now.UnixMilli()))
		if err != nil {
			return fail(err) // the transaction holds the write lock: the token is still pending
		}
		if err := recordEvent(ctx, tx, tokens.VerbAccepted, t.ID, r.Now, ""); err != nil {
			return fail(err)
		}
		if r.Key != nil {
			claimed, err := s.claimKey(ctx, tx, *r.Key, t.ID, r.Now)
			if err != nil {
				return fail(err)
			}
			if !claimed { // checked above, in this same transaction
				return tokens.Token{}, 0, fmt.Errorf("%s: key in use, yet not recorded", op)
			}
		}
		if err := tx.Commit(); err != nil {
			return fail(err)
		}
		return t, tokens.CodeAccepted, nil
	}

	// No code that may be tried matched: maybe that of a finished token.
	rows, err := tx.QueryContext(ctx, finishedCodesSQL, r.UserID, r.Now.UnixMilli(), tokens.MaxFinishedCodesCompared)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var code tokens.StoredCode
		t, err := scanToken(scanPrefix{rows, &code})
		if err != nil {
			return fail(err)
		}
		if r.Matches(t.ID, code) {
			return t, tokens.CodeFinished, nil
		}
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if len(candidates) == 0 {
		return tokens.Token{}, tokens.CodeNoneLeft, nil
	}
	// A wrong code: counted against every candidate, and kept although the
	// request fails.
	for _, c := range candidates {
		if _, err := tx.ExecContext(ctx, `UPDATE sign_in_token_codes SET attempts = attempts + 1 WHERE token_id = ?`, c.tokenID); err != nil {
			return fail(err)
		}
		if err := recordEvent(ctx, tx, tokens.VerbCodeFailed, c.tokenID, r.Now, ""); err != nil {
			return fail(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return tokens.Token{}, tokens.CodeWrong, nil
}

// codeCandidate is a code that may be tried.
type codeCandidate struct {
	tokenID string
	code    tokens.StoredCode
}

func (s *Store) codeCandidates(ctx context.Context, tx writeTx, r tokens.CodeRedemption) ([]codeCandidate, error) {
	rows, err := tx.QueryContext(ctx, codeCandidatesSQL, r.UserID, r.Now.UnixMilli(), r.MaxAttempts)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []codeCandidate
	for rows.Next() {
		var c codeCandidate
		if err := rows.Scan(&c.tokenID, &c.code.Hash, &c.code.KeyID); err != nil {
			return nil, err
		}
		list = append(list, c)
	}
	return list, rows.Err()
}

// scanPrefix is a row whose tokenColumns come first, then a stored code.
type scanPrefix struct {
	rows *sql.Rows
	code *tokens.StoredCode
}

func (p scanPrefix) Scan(dest ...any) error {
	return p.rows.Scan(append(dest, &p.code.Hash, &p.code.KeyID)...)
}

// Get returns the token with the given id, or tokens.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (tokens.Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx,
		`SELECT `+tokenColumns+` FROM sign_in_tokens WHERE id = ?`, id))
	return t, storeErr(ctx, "get token", err)
}

// List returns the tokens matching f, newest first (id breaking ties), and
// how many match in all.
func (s *Store) List(ctx context.Context, f tokens.ListFilter) ([]tokens.Token, int, error) {
	conds := []string{kindCondition(cmp.Or(f.Kind, tokens.KindSignIn))}
	var args []any
	if f.UserID != "" {
		conds = append(conds, "user_id = ?")
		args = append(args, f.UserID)
	}
	if f.Status != "" {
		conds = append(conds, "status = ?")
		args = append(args, string(f.Status))
	}
	where := "WHERE " + strings.Join(conds, " AND ")
	limit := f.Limit
	if limit <= 0 {
		limit = tokens.DefaultListLimit
	}

	// One read transaction, so the page and the count see the same rows.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, storeErr(ctx, "list tokens", err)
	}
	defer tx.Rollback()

	var total int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sign_in_tokens `+where, args...).Scan(&total); err != nil {
		return nil, 0, storeErr(ctx, "list tokens", err)
	}
	page := `SELECT ` + tokenColumns + ` FROM sign_in_tokens ` + where +
		` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`
	rows, err := tx.QueryContext(ctx, page, append(args, limit, max(f.Offset, 0))...)
	if err != nil {
		return nil, 0, storeErr(ctx, "list tokens", err)
	}
	defer rows.Close()
	var list []tokens.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, 0, storeErr(ctx, "list tokens", err)
		}
		list = append(list, t)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, storeErr(ctx, "list tokens", err)
	}
	return list, total, nil
}

const redeemSQL = `
UPDATE sign_in_tokens
SET status = 'accepted', accepted_at = ?3, updated_at = ?3
WHERE id = ?1 AND status = 'pending' AND ticket_hash = ?2 AND expires_at > ?3
RETURNING ` + tokenColumns

// Redeem accepts a pending, unexpired token whose ticket hash matches, in one
// conditional UPDATE; SQLite runs one writer at a time, so concurrent
// redemptions cannot both succeed. When nothing matched it returns the token
// as stored and Unchanged.
func (s *Store) Redeem(ctx context.Context, id string, ticketHash []byte, now time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	return s.transition(ctx, "redeem token", tokens.VerbAccepted, id, key, redeemSQL, id, ticketHash, now.UnixMilli())
}

const revokeSQL = `
UPDATE sign_in_tokens
SET status = 'revoked', revoked_at = ?2, updated_at = ?2
WHERE id = ?1 AND status = 'pending'
RETURNING ` + tokenColumns

// Revoke revokes a pending token, expired or not, in one conditional UPDATE.
// When the token is not pending it returns it as stored and Unchanged.
func (s *Store) Revoke(ctx context.Context, id string, now time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	return s.transition(ctx, "revoke token", tokens.VerbRevoked, id, key, revokeSQL, id, now.UnixMilli())
}

// transition runs a conditional UPDATE ... RETURNING and records its event
// (verb) in one transaction; when it changes nothing, a read says how the
// token stands (or that it is absent). With a key, the update, its event
// and the key's record share the transaction, which commits only when all
// were made.
func (s *Store) transition(ctx context.Context, op, verb, id string, key *tokens.Idempotency, query string, args ...any) (tokens.Token, tokens.Change, error) {
	tx, err := s.begin(ctx) // BEGIN IMMEDIATE: the one writer from here on
	if err != nil {
		return tokens.Token{}, tokens.Unchanged, storeErr(ctx, op, err)
	}
	defer tx.Rollback() // no-op once committed

	t, err := scanToken(tx.QueryRowContext(ctx, query, args...))
	if err == nil {
		if err := recordEvent(ctx, tx, verb, t.ID, t.UpdatedAt, ""); err != nil {
			return tokens.Token{}, tokens.Unchanged, storeErr(ctx, op, err)
		}
	}
	switch {
	case err == nil && key == nil:
		if err := tx.Commit(); err != nil {
			return tokens.Token{}, tokens.Unchanged, storeErr(ctx, op, err)
		}
		return t, tokens.Changed, nil
	case err == nil:
		claimed, err := s.claimKey(ctx, tx, *key, t.ID, t.UpdatedAt)
		if err != nil {
			return tokens.Token{}, tokens.Unchanged, storeErr(ctx, op, err)
		}
		if claimed {
			if err := tx.Commit(); err != nil {
				return tokens.Token{}, tokens.Unchanged, storeErr(ctx, op, err)
			}
			return t, tokens.Changed, nil
		}
		// The key is held by another request: the rollback undoes the change.
	case !errors.Is(err, sql.ErrNoRows):
		return tokens.Token{}, tokens.Unchanged, storeErr(ctx, op, err)
	case key == nil:
		return s.stored(ctx, tx, id, tokens.Unchanged)
	}
	stored, err := lookupKey(ctx, tx, key.Key)
	if err != nil {
		return tokens.Token{}, tokens.Unchanged, storeErr(ctx, op, err)
	}
	replay, err := key.Replays(stored)
	switch {
	case err != nil:
		return tokens.Token{}, tokens.Unchanged, err
	case replay:
		return s.stored(ctx, tx, stored.TokenID, tokens.Replayed)
	}
	return s.stored(ctx, tx, id, tokens.Unchanged)
}

// querier is what reads need of a *sql.DB or *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// stored reads a token for an outcome that changed nothing now.
func (s *Store) stored(ctx context.Context, q querier, id string, change tokens.Change) (tokens.Token, tokens.Change, error) {
	t, err := scanToken(q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM sign_in_tokens WHERE id = ?`, id))
	if err != nil {
		return tokens.Token{}, tokens.Unchanged, storeErr(ctx, "get token", err)
	}
	return t, change, nil
}

// claimKeySQL takes an idempotency key for a token: it inserts the key, or
// takes over a key last used before notBefore (?5). A key in use is left
// alone and no row is affected.
const claimKeySQL = `
INSERT INTO idempotency_keys AS k (key, request_hash, token_id, created_at)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (key) DO UPDATE
SET request_hash = excluded.request_hash, token_id = excluded.token_id, created_at = excluded.created_at
WHERE k.created_at < ?5`

// claimKey records key for the token tokenID at now, and reports whether it
// could: false when the key is in use.
func (s *Store) claimKey(ctx context.Context, q querier, key tokens.Idempotency, tokenID string, now time.Time) (bool, error) {
	res, err := q.ExecContext(ctx, claimKeySQL, key.Key, key.RequestHash, tokenID, now.UnixMilli(), key.NotBefore.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// lookupKey returns the record of an idempotency key, or nil.
func lookupKey(ctx context.Context, q querier, key string) (*tokens.StoredKey, error) {
	var k tokens.StoredKey
	var created int64
	err := q.QueryRowContext(ctx, `SELECT request_hash, token_id, created_at FROM idempotency_keys WHERE key = ?`, key).
		Scan(&k.RequestHash, &k.TokenID, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k.CreatedAt = fromMillis(created)
	return &k, nil
}

// deleteFinishedSQL deletes at most ?2 tokens that expired before ?1,
// whatever their status, by the expires_at index (migration 00009).
const deleteFinishedSQL = `
DELETE FROM sign_in_tokens
WHERE id IN (
	SELECT id FROM sign_in_tokens
	WHERE expires_at < ?1
	LIMIT ?2
)`

// DeleteFinished deletes up to limit tokens that expired before cutoff,
// pending, accepted or revoked, and returns how many it deleted.
func (s *Store) DeleteFinished(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "delete finished tokens", deleteFinishedSQL, cutoff, limit)
}

const deleteOldKeysSQL = `
DELETE FROM idempotency_keys
WHERE key IN (SELECT key FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)`

// DeleteIdempotencyKeys deletes up to limit idempotency keys used before
// cutoff, and returns how many it deleted.
func (s *Store) DeleteIdempotencyKeys(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "delete old idempotency keys", deleteOldKeysSQL, cutoff, limit)
}

func (s *Store) deleteBatch(ctx context.Context, op, query string, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	res, err := s.write.ExecContext(ctx, query, cutoff.UnixMilli(), limit)
	if err != nil {
		return 0, storeErr(ctx, op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, storeErr(ctx, op, err)
	}
	return int(n), nil
}

// storeErr puts err in the domain's terms by the stores' one rule.
func storeErr(ctx context.Context, op string, err error) error {
	return storeerr.Translate(ctx, driver{}, op, err)
}

// driver tells storeerr what database/sql's and SQLite's errors mean.
type driver struct{}

func (driver) NoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

func (driver) Unreachable(err error) bool { return unreachable(err) }

// unreachable reports whether err means the database could not be used at
// all: busy past busy_timeout, or a file that cannot be opened or written.
func unreachable(err error) bool {
	var sqliteErr *sqlite.Error
	if !errors.As(err, &sqliteErr) {
		return false
	}
	switch sqliteErr.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL:
		return true
	}
	return false
}
