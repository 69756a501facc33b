package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Group commit, done by the store.
//
// Every commit waits for its WAL flush, and for a one-row INSERT or UPDATE
// the round trip and the commit around it cost the server more than the row
// itself. So creates and redemptions go through a fixed number of writers.
// A write that finds a writer idle is sent at once, as its own statement,
// exactly as without grouping: a lightly loaded service adds no wait. Writes
// that arrive while every writer is busy queue up, and the next free writer
// sends all of them together: one round trip, one statement per kind over
// arrays, one transaction, one WAL flush. Each caller still gets its own
// answer only once its write is committed.

// DefaultWriters is the service's number of writers (DATABASE_WRITERS). With
// fewer writers, more writes queue and groups are larger: on the load tool's
// pairs, 1 writer gave 0.67 of the baseline, 2 gave 0.56-0.59, 4 gave 0.56 and
// none 0.46 (docs/benchmarks.md). Two keep most of the gain while one slow
// group leaves the other writer free.
const DefaultWriters = 2

// maxGroup bounds how many writes one transaction carries.
const maxGroup = 64

type writeKind uint8

const (
	writeCreate writeKind = iota + 1
	writeRedeem
)

func (k writeKind) op() string {
	if k == writeCreate {
		return "create token"
	}
	return "redeem token"
}

// write is one Create or Redeem handed to the writers, and its outcome.
type write struct {
	ctx  context.Context
	kind writeKind
	// create: the token to insert. redeem: the token as stored after the
	// update, when it matched.
	token tokens.Token
	id    string // redeem: the token, its ticket's hash and the time
	hash  []byte
	now   time.Time

	matched bool  // redeem: the conditional UPDATE changed the row
	alone   bool  // not settled in its group: the caller runs it on its own
	err     error // the write failed
	done    chan struct{}
}

// writers is the store's pool of writers: goroutines that take writes off
// one queue, each sending what has queued up as one transaction.
type writers struct {
	s     *Store
	queue chan *write

	mu     sync.RWMutex // held to send on queue; taken to close it
	closed bool
	wg     sync.WaitGroup

	groups, grouped, retried atomic.Int64 // see WriteStats
}

// WriteStats counts the store's grouped writes since it was opened.
type WriteStats struct {
	Groups  int64 // transactions that carried two writes or more
	Grouped int64 // writes those transactions carried
	Retried int64 // writes of a group the server refused, run again alone
}

// WriteStats returns the grouping figures; all zero without writers.
func (s *Store) WriteStats() WriteStats {
	if s.group == nil {
		return WriteStats{}
	}
	g := s.group
	return WriteStats{Groups: g.groups.Load(), Grouped: g.grouped.Load(), Retried: g.retried.Load()}
}

func startWriters(s *Store, n int) *writers {
	g := &writers{s: s, queue: make(chan *write, 4*maxGroup)}
	g.wg.Add(n)
	for range n {
		go g.run()
	}
	return g
}

// close stops taking writes, lets the writers finish what is queued and
// waits for them.
func (g *writers) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.queue)
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// do queues w and waits until a writer has settled it. It fails only when
// w's context ends before a writer takes it, or the store is closed. Once
// queued, w is waited for even if its context ends: the writer drops it, or
// sends it under a deadline no later than its own, and the caller learns
// what became of it.
func (g *writers) do(w *write) error {
	w.done = make(chan struct{})
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return fmt.Errorf("%s: %w: the store is closed", w.kind.op(), tokens.ErrUnavailable)
	}
	select {
	case g.queue <- w:
	case <-w.ctx.Done():
		g.mu.RUnlock()
		return storeErr(w.ctx, w.kind.op(), w.ctx.Err())
	}
	g.mu.RUnlock()
	<-w.done
	return nil
}

// run is one writer: it blocks for a write, takes whatever else has queued
// meanwhile, and sends it all.
func (g *writers) run() {
	defer g.wg.Done()
	group := make([]*write, 0, maxGroup)
	for w := range g.queue {
		group = append(group[:0], w)
	fill:
		for len(group) < maxGroup {
			select {
			case w, ok := <-g.queue:
				if !ok {
					break fill
				}
				group = append(group, w)
			default:
				break fill
			}
		}
		g.send(group)
		clear(group)
	}
}

// send writes one group and settles each of its writes.
func (g *writers) send(group []*write) {
	live := group[:0]
	for _, w := range group {
		if err := w.ctx.Err(); err != nil {
			w.err = storeErr(w.ctx, w.kind.op(), err)
			close(w.done)
			continue
		}
		live = append(live, w)
	}
	if len(live) == 1 {
		// Alone, it keeps its own context: a caller who gives up cancels
		// the statement on the server.
		g.s.writeOne(live[0])
		close(live[0].done)
		return
	}
	if len(live) > 1 {
		g.groups.Add(1)
		g.grouped.Add(int64(len(live)))
		if retried := g.s.writeGroup(live); retried {
			g.retried.Add(int64(len(live)))
		}
		for _, w := range live {
			close(w.done)
		}
	}
}

// writeOne sends a single write as its own statement.
func (s *Store) writeOne(w *write) {
	switch w.kind {
	case writeCreate:
		w.err = s.createOne(w.ctx, w.token)
	case writeRedeem:
		w.token, w.matched, w.err = s.update(w.ctx, w.kind.op(), redeemSQL, w.id, w.hash, w.now)
	}
}

// createTokensSQL inserts one row per element of its arrays, which
// createArgs fills in insertTokenSQL's order.
const createTokensSQL = `
INSERT INTO sign_in_tokens (id, user_id, org_id, status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at)
SELECT id, user_id, nullif(org_id, ''), status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
	$6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[])
	AS t(id, user_id, org_id, status, ticket_hash,
		created_at, updated_at, expires_at, accepted_at, revoked_at)`

// RedeemTokensSQL is the conditional UPDATE of a group's redemptions: one
// (id, ticket hash, now) per element of its arrays, each accepted under the
// same conditions as alone. Its RETURNING has tokenColumns for each token it
// accepted. Exported for the load tool's query plans.
const RedeemTokensSQL = `
UPDATE sign_in_tokens AS t
SET status = 'accepted', accepted_at = r.now, updated_at = r.now
FROM unnest($1::text[], $2::bytea[], $3::timestamptz[]) AS r(id, ticket_hash, now)
WHERE t.id = r.id AND t.status = 'pending' AND t.ticket_hash = r.ticket_hash AND t.expires_at > r.now
RETURNING t.id, t.user_id, coalesce(t.org_id, ''), t.status, t.ticket_hash,
	t.created_at, t.updated_at, t.expires_at, t.accepted_at, t.revoked_at`

// writeGroup sends two or more writes in one transaction and settles each:
// done, failed, or to be run again alone. It reports whether the server
// refused the group, so that every write of it runs again alone.
func (s *Store) writeGroup(group []*write) (refused bool) {
	var creates, redeems []*write
	for _, w := range group {
		if w.kind == writeCreate {
			creates = append(creates, w)
		} else {
			redeems = append(redeems, w)
		}
	}
	// Rows are locked in id order, so two groups cannot deadlock over the
	// same tokens; a second redemption of one token waits for the first's
	// group to commit, then runs alone and finds the token accepted.
	slices.SortFunc(redeems, func(a, b *write) int { return strings.Compare(a.id, b.id) })
	kept := redeems[:0]
	for i, w := range redeems {
		if i > 0 && w.id == redeems[i-1].id {
			w.alone = true
			continue
		}
		kept = append(kept, w)
	}
	redeems = kept

	ctx, cancel := groupContext(group)
	defer cancel()
	batch := &pgx.Batch{}
	if len(creates) > 0 {
		batch.Queue(createTokensSQL, createArgs(creates)...)
	}
	if len(redeems) > 0 {
		ids := make([]string, len(redeems))
		hashes := make([][]byte, len(redeems))
		nows := make([]time.Time, len(redeems))
		for i, w := range redeems {
			ids[i], hashes[i], nows[i] = w.id, w.hash, w.now
		}
		batch.Queue(RedeemTokensSQL, ids, hashes, nows).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				t, err := scanToken(rows)
				if err != nil {
					return err
				}
				i, found := slices.BinarySearchFunc(redeems, t.ID, func(w *write, id string) int {
					return strings.Compare(w.id, id)
				})
				if found {
					redeems[i].token, redeems[i].matched = t, true
				}
			}
			return rows.Err()
		})
	}
	err := s.pool.SendBatch(ctx, batch).Close()
	if err == nil {
		return false
	}
	for _, w := range redeems {
		w.matched = false // nothing of the group was committed
	}
	var pgErr *pgconn.PgError
	if ctx.Err() == nil && errors.As(err, &pgErr) {
		// The server refused the statement (a constraint one write broke, a
		// deadlock): the transaction rolled back, and each write is run again
		// on its own, so that only its own error reaches each caller.
		for _, w := range group {
			w.alone = true
		}
		return true
	}
	err = s.fail(ctx, "write a group of tokens", err)
	for _, w := range group {
		if !w.alone {
			w.err = err
		}
	}
	return false
}

// createArgs turns creates into createTokensSQL's arrays.
func createArgs(creates []*write) []any {
	n := len(creates)
	var (
		ids, users, orgs, statuses = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		hashes                     = make([][]byte, n)
		created, updated, expires  = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		accepted, revoked          = make([]*time.Time, n), make([]*time.Time, n)
	)
	for i, w := range creates {
		t := w.token
		ids[i], users[i], orgs[i], statuses[i], hashes[i] = t.ID, t.UserID, t.OrgID, string(t.Status), t.TicketHash
		created[i], updated[i], expires[i], accepted[i], revoked[i] = t.CreatedAt, t.UpdatedAt, t.ExpiresAt, t.AcceptedAt, t.RevokedAt
	}
	return []any{ids, users, orgs, statuses, hashes, created, updated, expires, accepted, revoked}
}

// groupContext is the context a group is sent under: it carries no caller's
// cancellation, since one caller leaving must not fail the others, and ends
// at the earliest of the callers' deadlines, so that no caller waits past its
// own.
func groupContext(group []*write) (context.Context, context.CancelFunc) {
	var deadline time.Time
	for _, w := range group {
		if d, ok := w.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	ctx := context.WithoutCancel(group[0].ctx)
	if deadline.IsZero() {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, deadline)
}
