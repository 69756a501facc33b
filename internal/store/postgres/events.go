package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// The audit trail. Every statement that changes tokens inserts its events
// in the same statement, through a data-modifying CTE (see changeSQL), so an
// event exists exactly when its change committed, grouped writes included.

// eventTokenJSON is the snapshot an event keeps of the token row c: every
// column but ticket_hash. ListEvents reads it back with jsonb_populate_record.
const eventTokenJSON = `jsonb_build_object('id', c.id, 'user_id', c.user_id, 'org_id', c.org_id,
	'status', c.status, 'created_at', c.created_at, 'updated_at', c.updated_at,
	'expires_at', c.expires_at, 'accepted_at', c.accepted_at, 'revoked_at', c.revoked_at,
	'redirect_url', c.redirect_url, 'metadata', c.metadata, 'actor', c.actor,
	'session_max_duration_seconds', c.session_max_duration_seconds)`

// eventInsert is an INSERT recording verb for every token row c that from
// yields (a FROM clause that names it c), at the SQL time at, with the
// error code errorCode (SQL) and the context values ctx (SQL, in
// tokens.EventContext's order).
func eventInsert(from, verb, at, errorCode string, ctx [4]string) string {
	return fmt.Sprintf(`INSERT INTO events (type, token_id, user_id, created_at, error_code, token,
		key_label, ip, user_agent, trace_id)
	SELECT CASE WHEN substr(c.id, 1, 4) = 'act_' THEN 'actor_token.' ELSE 'sign_in_token.' END || '%s',
		c.id, c.user_id, %s, %s, %s, %s, %s, %s, %s
	%s`, verb, at, errorCode, eventTokenJSON, ctx[0], ctx[1], ctx[2], ctx[3], from)
}

// ctxParams are the placeholders $n+1 to $n+4 for eventArgs.
func ctxParams(n int) [4]string {
	return [4]string{fmt.Sprintf("$%d::text", n+1), fmt.Sprintf("$%d::text", n+2), fmt.Sprintf("$%d::text", n+3), fmt.Sprintf("$%d::text", n+4)}
}

// eventArgs are the values of ctx's EventContext, for ctxParams.
func eventArgs(ctx context.Context) []any {
	ec := tokens.EventContextFrom(ctx)
	return []any{ec.Key, ec.IP, ec.UserAgent, ec.TraceID}
}

// changeSQL makes update, an INSERT or UPDATE of sign_in_tokens over $1 to
// $n without RETURNING, also record verb for every row it changes, with the
// event context at $n+1 to $n+4, and with keyed, the idempotency key $n+5
// with request hash $n+6 for the token it changes, all in one statement.
// It answers tokenColumns of every row changed.
func changeSQL(update, verb string, n int, keyed bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "WITH changed AS (%s RETURNING *),\nrecorded AS (%s)", update,
		eventInsert("FROM changed AS c", verb, "c.updated_at", "NULL", ctxParams(n)))
	if keyed {
		fmt.Fprintf(&b, `,
claimed AS (
	INSERT INTO idempotency_keys (key, request_hash, token_id, created_at)
	SELECT $%d, $%d, id, updated_at FROM changed
)`, n+5, n+6)
	}
	b.WriteString("\nSELECT " + tokenColumns + " FROM changed")
	return b.String()
}

// appendEventSQL records a refusal ($2, with error code $3, at $4) for the
// stored token $1 as it stands.
var appendEventSQL = eventInsert("FROM sign_in_tokens AS c WHERE c.id = $1", "' || $2::text || '", "$4::timestamptz", "nullif($3::text, '')", ctxParams(4))

// AppendEvent records e for the stored token e.Token.ID, in a statement of
// its own; a token no longer stored records nothing.
func (s *Store) AppendEvent(ctx context.Context, e tokens.Event) error {
	_, verb, _ := strings.Cut(e.Type, ".")
	args := append([]any{e.Token.ID, verb, e.ErrorCode, e.CreatedAt}, eventArgs(ctx)...)
	_, err := s.pool.Exec(ctx, appendEventSQL, args...)
	return s.fail(ctx, "record event", err)
}

// ListEvents returns a page of events, oldest first.
//
// Why a tailing reader never misses an event: ids are assigned as rows are
// inserted, but transactions commit in another order, so an event with a
// smaller position can become visible after a larger one was read. Events
// are therefore ordered by (xid, seq), the inserting transaction's id first,
// and a page shows only events whose transaction is older than the xmin of
// the statement's snapshot: every transaction below xmin has ended, and any
// transaction that could still insert an event (one in progress, or one
// that has no id yet) has an id at or above xmin. So once an event is shown,
// every event that sorts before it has committed (or rolled back) already,
// and a cursor never passes an event that is yet to appear. The cost: an
// open transaction anywhere on the server delays the tail until it ends.
func (s *Store) ListEvents(ctx context.Context, f tokens.EventFilter) ([]tokens.Event, bool, error) {
	return s.listEvents(ctx, s.pool, f)
}

// rowsQuerier is a pool or a transaction.
type rowsQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// listEvents is ListEvents through q.
func (s *Store) listEvents(ctx context.Context, q rowsQuerier, f tokens.EventFilter) ([]tokens.Event, bool, error) {
	var afterXid, afterSeq uint64
	if f.After != "" {
		var ok bool
		if afterXid, afterSeq, ok = tokens.ParseEventID(f.After); !ok {
			return nil, false, tokens.ParamValueInvalid("after", "must be the id of an event.")
		}
	}
	args := []any{int64(afterXid), int64(afterSeq)}
	conds := []string{"e.xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint", "(e.xid, e.seq) > ($1, $2)"}
	if f.Type != "" {
		args = append(args, f.Type)
		conds = append(conds, fmt.Sprintf("e.type = $%d", len(args)))
	}
	if f.UserID != "" {
		args = append(args, f.UserID)
		conds = append(conds, fmt.Sprintf("e.user_id = $%d", len(args)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = tokens.DefaultEventLimit
	}
	args = append(args, limit+1)
	sql := fmt.Sprintf(`SELECT e.xid, e.seq, e.type, e.created_at, coalesce(e.error_code, ''),
	e.key_label, e.ip, e.user_agent, e.trace_id, t.*
FROM events AS e
CROSS JOIN LATERAL (SELECT %s FROM jsonb_populate_record(NULL::sign_in_tokens, e.token)) AS t
WHERE %s
ORDER BY e.xid, e.seq
LIMIT $%d`, tokenColumns, strings.Join(conds, " AND "), len(args))
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, s.fail(ctx, "list events", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (tokens.Event, error) {
		var e tokens.Event
		var xid, seq int64
		t, err := scanToken(eventRow{row, []any{&xid, &seq, &e.Type, &e.CreatedAt, &e.ErrorCode,
			&e.Context.Key, &e.Context.IP, &e.Context.UserAgent, &e.Context.TraceID}})
		e.ID, e.Token, e.CreatedAt = tokens.NewEventID(uint64(xid), uint64(seq)), t, e.CreatedAt.UTC()
		return e, err
	})
	if err != nil {
		return nil, false, s.fail(ctx, "list events", err)
	}
	more := len(list) > limit
	if more {
		list = list[:limit]
	}
	return list, more, nil
}

// eventRow is a row whose event columns come before tokenColumns.
type eventRow struct {
	row    pgx.Row
	before []any
}

func (r eventRow) Scan(dest ...any) error { return r.row.Scan(append(r.before, dest...)...) }

const deleteEventsSQL = `
DELETE FROM events
WHERE (xid, seq) IN (
	SELECT xid, seq FROM events
	WHERE created_at < $1
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)`

// DeleteEvents deletes up to limit events created before cutoff, and
// returns how many it deleted. Several replicas may run it at once.
func (s *Store) DeleteEvents(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "delete old events", deleteEventsSQL, cutoff, limit)
}
