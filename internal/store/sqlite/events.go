package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// The audit trail. Every change records its events in its own transaction.
// SQLite has one writer, and a transaction takes the write lock at BEGIN,
// so events commit in the order of their autoincrement seq: a reader that
// pages by seq never passes an event that is yet to commit.

// recordEventSQL records an event of verb ?1 for the stored token ?2 as it
// stands (every column but ticket_hash), at ?3, with error code ?4 and the
// event context ?5 to ?8.
const recordEventSQL = `
INSERT INTO events (type, token_id, user_id, created_at, error_code, token, key_label, ip, user_agent, trace_id)
SELECT CASE WHEN substr(id, 1, 4) = 'act_' THEN 'actor_token.' ELSE 'sign_in_token.' END || ?1,
	id, user_id, ?3, nullif(?4, ''),
	json_object('id', id, 'user_id', user_id, 'org_id', org_id, 'status', status,
		'created_at', created_at, 'updated_at', updated_at, 'expires_at', expires_at,
		'accepted_at', accepted_at, 'revoked_at', revoked_at, 'redirect_url', redirect_url,
		'metadata', metadata, 'actor', actor, 'session_max_duration_seconds', session_max_duration_seconds),
	?5, ?6, ?7, ?8
FROM sign_in_tokens WHERE id = ?2`

// recordEvent records verb for the stored token id at at, with the event
// context of ctx, through q (the change's transaction).
func recordEvent(ctx context.Context, q querier, verb, id string, at time.Time, errorCode string) error {
	ec := tokens.EventContextFrom(ctx)
	res, err := q.ExecContext(ctx, recordEventSQL, verb, id, at.UnixMilli(), errorCode, ec.Key, ec.IP, ec.UserAgent, ec.TraceID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return cmpErr(err, fmt.Errorf("record %s event of %s: %d rows", verb, id, n))
	}
	return nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// AppendEvent records e for the stored token e.Token.ID, in a statement of
// its own; a token no longer stored records nothing.
func (s *Store) AppendEvent(ctx context.Context, e tokens.Event) error {
	_, verb, _ := strings.Cut(e.Type, ".")
	ec := tokens.EventContextFrom(ctx)
	_, err := s.write.ExecContext(ctx, recordEventSQL, verb, e.Token.ID, e.CreatedAt.UnixMilli(), e.ErrorCode,
		ec.Key, ec.IP, ec.UserAgent, ec.TraceID)
	return storeErr(ctx, "record event", err)
}

// eventTokenColumns read an event's token snapshot as scanToken reads a row.
const eventTokenColumns = `json_extract(token, '$.id'), json_extract(token, '$.user_id'),
	coalesce(json_extract(token, '$.org_id'), ''), json_extract(token, '$.status'), NULL,
	json_extract(token, '$.created_at'), json_extract(token, '$.updated_at'), json_extract(token, '$.expires_at'),
	json_extract(token, '$.accepted_at'), json_extract(token, '$.revoked_at'),
	coalesce(json_extract(token, '$.redirect_url'), ''), coalesce(json_extract(token, '$.metadata'), ''),
	coalesce(json_extract(token, '$.actor'), ''), coalesce(json_extract(token, '$.session_max_duration_seconds'), 0)`

// ListEvents returns a page of events, oldest first, by seq.
func (s *Store) ListEvents(ctx context.Context, f tokens.EventFilter) ([]tokens.Event, bool, error) {
	return listEvents(ctx, s.db, f)
}

// listEvents is ListEvents through q.
func listEvents(ctx context.Context, q querier, f tokens.EventFilter) ([]tokens.Event, bool, error) {
	var after uint64
	if f.After != "" {
		var ok bool
		if _, after, ok = tokens.ParseEventID(f.After); !ok {
			return nil, false, tokens.ParamValueInvalid("after", "must be the id of an event.")
		}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = tokens.DefaultEventLimit
	}
	rows, err := q.QueryContext(ctx, `SELECT seq, type, created_at, coalesce(error_code, ''),
	key_label, ip, user_agent, trace_id, `+eventTokenColumns+`
FROM events
WHERE seq > ?1 AND (?2 = '' OR type = ?2) AND (?3 = '' OR user_id = ?3)
ORDER BY seq
LIMIT ?4`, int64(after), f.Type, f.UserID, limit+1)
	if err != nil {
		return nil, false, storeErr(ctx, "list events", err)
	}
	defer rows.Close()
	var list []tokens.Event
	for rows.Next() {
		var e tokens.Event
		var seq, created int64
		t, err := scanToken(eventRow{rows, []any{&seq, &e.Type, &created, &e.ErrorCode,
			&e.Context.Key, &e.Context.IP, &e.Context.UserAgent, &e.Context.TraceID}})
		if err != nil {
			return nil, false, storeErr(ctx, "list events", err)
		}
		e.ID, e.CreatedAt, e.Token = tokens.NewEventID(0, uint64(seq)), fromMillis(created), t
		list = append(list, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, storeErr(ctx, "list events", err)
	}
	more := len(list) > limit
	if more {
		list = list[:limit]
	}
	return list, more, nil
}

// eventRow is a row whose event columns come before the token's.
type eventRow struct {
	row    interface{ Scan(...any) error }
	before []any
}

func (r eventRow) Scan(dest ...any) error { return r.row.Scan(append(r.before, dest...)...) }

const deleteEventsSQL = `
DELETE FROM events
WHERE seq IN (SELECT seq FROM events WHERE created_at < ?1 LIMIT ?2)`

// DeleteEvents deletes up to limit events created before cutoff, and
// returns how many it deleted.
func (s *Store) DeleteEvents(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "delete old events", deleteEventsSQL, cutoff, limit)
}
