package postgres

import (
	"cmp"
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
	"github.com/jackc/pgx/v5/pgxpool"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Group commit, done by the store's writers.
//
// Every commit waits for its WAL flush, and for a one-row INSERT or UPDATE
// the round trip and the commit around it cost the server more than the row
// itself. So creates and redemptions go through a fixed number of writers.
// A write that finds a writer idle is sent at once, as its own statement: a
// lightly loaded service adds no wait. Writes that arrive while every writer
// is busy queue up, and the next free writer sends all of them together: one
// round trip, one statement per kind over arrays, one transaction, one WAL
// flush.
//
// What grouping must never do is spread one write's trouble to the others.
// The invariants:
//
//  1. A caller is answered only once its write committed, failed, or was
//     handed back to it. A caller whose context ends while its write is
//     still queued leaves at once, and its write is never sent.
//  2. A group waits for a lock (a row another transaction holds, a table
//     lock, an idempotency key another transaction is inserting) no longer
//     than the writers' lock_timeout; then the server refuses the group.
//  3. A group is sent under the earliest deadline of its callers and none of
//     their cancellations, so no caller waits past its own deadline and one
//     caller leaving fails nobody else.
//  4. A group the server refuses (a constraint, a lock timeout, a deadlock,
//     a deadline that passed) rolled back as a whole, and every write of it
//     is handed back; so is every write of a group that never reached the
//     server.
//  5. A write handed back runs alone, on the caller's goroutine, on the
//     store's main pool and under the caller's own context: it waits or fails
//     exactly as it would have without grouping.
//  6. Only a connection lost while the group was in flight fails the whole
//     group: nobody can tell whether it committed, so every caller is told
//     ErrUnavailable (and a redemption can be retried safely under an
//     Idempotency-Key).
//  7. A group whose commit succeeded without being durable as configured
//     (its wait for the synchronous standby canceled, or the group past its
//     deadline: see durable.go) fails as a whole too: the commit is one,
//     shared by every caller, and each is told ErrUnavailable.

// DefaultWriters is the service's number of writers (DATABASE_WRITERS). With
// fewer writers, more writes queue and groups are larger: on the load tool's
// pairs, 1 writer gave 0.67 of the baseline, 2 gave 0.56-0.59, 4 gave 0.56 and
// none 0.46 (docs/benchmarks.md). Two keep most of the gain while one slow
// group leaves the other writer free.
const DefaultWriters = 2

// maxGroup bounds how many writes one transaction carries.
const maxGroup = 64

// writerLockTimeout is the writers' lock_timeout: the longest one write's
// lock can hold up the others of its group. A healthy lock wait lasts a
// commit, a few milliseconds here (a revoke or another replica's group on
// the same row); a row held by a slow transaction, an operator's query or a
// migration would otherwise hold the whole group until its earliest deadline.
// Past it the group is refused and its writes run alone, each waiting only
// under its own deadline; a spurious timeout costs a rerun, never a failure.
//
// Locking each group's rows first with SKIP LOCKED would never wait at all,
// but each row lock is one more heap change and WAL record per row: on the
// load tool's pairs that variant gave 0.39 of the baseline and 654 µs of
// database time per pair, against 0.46-0.53 and 372-386 µs for this one
// (docs/benchmarks.md).
const writerLockTimeout = 100 * time.Millisecond

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

// A write's life, in write.state: queued, then taken by a writer or
// abandoned by its caller, whichever comes first.
const (
	stateQueued int32 = iota
	stateTaken
	stateAbandoned
)

// write is one Create or Redeem handed to the writers: its input, and once
// done is closed, its outcome.
type write struct {
	ctx    context.Context
	kind   writeKind
	create tokens.Token // writeCreate: the token to insert
	redeem redemption   // writeRedeem
	state  atomic.Int32
	done   chan struct{}
	out    writeOutcome
}

// redemption is what a grouped Redeem needs.
type redemption struct {
	id   string
	hash []byte
	now  time.Time
	key  *tokens.Idempotency // optional
}

// writeOutcome is what became of a write. Exactly one of: alone (the caller
// runs it itself), err, or success, which for a redemption is matched
// (token holds the accepted token) or not (the row did not meet the
// conditions, and the caller reads why).
type writeOutcome struct {
	alone   bool
	err     error
	matched bool
	token   tokens.Token
}

// writers is the store's pool of writers: goroutines that take writes off
// one bounded queue (a full queue makes callers wait: back-pressure), each
// sending what has queued up as one transaction, on connections of their own.
type writers struct {
	s     *Store
	pool  *pgxpool.Pool // one connection per writer, with writerLockTimeout
	queue chan *write

	mu     sync.RWMutex // held to send on queue; taken to close it
	closed bool
	wg     sync.WaitGroup

	beforeSend atomic.Pointer[func()] // tests hold a writer here
	tracer     trace.Tracer           // nil: no spans

	groups, grouped, retried atomic.Int64 // see WriteStats
}

// WriteStats counts the store's grouped writes since it was opened.
type WriteStats struct {
	Groups  int64 // transactions that carried two writes or more
	Grouped int64 // writes those transactions carried
	Retried int64 // writes handed back to run alone (a group refused or out of time)
}

// WriteStats returns the grouping figures; all zero without writers.
func (s *Store) WriteStats() WriteStats {
	if s.group == nil {
		return WriteStats{}
	}
	g := s.group
	return WriteStats{Groups: g.groups.Load(), Grouped: g.grouped.Load(), Retried: g.retried.Load()}
}

// startWriters starts n writers for s, connecting to the database cfg
// describes through a pool of their own.
func startWriters(ctx context.Context, s *Store, cfg *pgxpool.Config, n int, tp trace.TracerProvider) (*writers, error) {
	cfg = cfg.Copy()
	cfg.MaxConns = int32(n)
	cfg.MinConns = 0
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = fmt.Sprintf("%dms", writerLockTimeout.Milliseconds())
	// Every statement the writers send finds its rows by primary key. A
	// grouped UPDATE joins the table with its unnested arrays, and its
	// generic plan, cached per connection, is made once: planned while the
	// table is new and looks empty (never analyzed, no pages), a sequential
	// scan looks cheaper than ten index probes, and stays the plan while the
	// table grows, until autovacuum's next ANALYZE; every group then reads
	// the whole table. Without sequential scans the plan is the primary
	// key's nested loop at any size (docs/benchmarks.md, "Migration 00009").
	cfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	g := &writers{s: s, pool: pool, queue: make(chan *write, 4*maxGroup)}
	if tp != nil {
		g.tracer = tp.Tracer(TracerName)
	}
	g.wg.Add(n)
	for range n {
		go g.run()
	}
	return g, nil
}

// close stops taking writes, lets the writers finish what is queued, waits
// for them and closes their pool.
func (g *writers) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.queue)
	}
	g.mu.Unlock()
	g.wg.Wait()
	g.pool.Close()
}

// do queues w and waits until a writer has settled it, or until w's context
// ends while w is still queued (then w is never sent). A write a writer has
// taken is waited for: its group ends by this caller's deadline (invariant
// 3), and the caller learns what became of it.
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
	select {
	case <-w.done:
	case <-w.ctx.Done():
		if w.state.CompareAndSwap(stateQueued, stateAbandoned) {
			return storeErr(w.ctx, w.kind.op(), w.ctx.Err())
		}
		<-w.done
	}
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
		if hook := g.beforeSend.Load(); hook != nil {
			(*hook)()
		}
		g.send(group)
		clear(group)
	}
}

// send writes one group and settles each of its writes.
func (g *writers) send(group []*write) {
	live := group[:0]
	for _, w := range group {
		if !w.state.CompareAndSwap(stateQueued, stateTaken) {
			continue // its caller left
		}
		if err := w.ctx.Err(); err != nil {
			w.out.err = storeErr(w.ctx, w.kind.op(), err)
			close(w.done)
			continue
		}
		live = append(live, w)
	}
	switch {
	case len(live) == 1 && live[0].kind == writeCreate:
		g.createOne(live[0])
	case len(live) == 1 && live[0].redeem.key == nil:
		g.redeemOne(live[0])
	case len(live) > 0:
		if len(live) > 1 {
			g.groups.Add(1)
			g.grouped.Add(int64(len(live)))
		}
		g.writeGroup(live)
	}
	for _, w := range live {
		if w.out.alone {
			g.retried.Add(1)
		}
		close(w.done)
	}
}

// createOne sends a lone create as its own statement, under its caller's
// context: a caller who gives up cancels the statement on the server.
func (g *writers) createOne(w *write) {
	ctx := watchCommits(w.ctx)
	_, err := g.pool.Exec(ctx, insertTokenSQL, insertTokenArgs(w.ctx, w.create)...)
	g.settle(ctx, w, err, func() {})
}

// redeemOne sends a lone redemption without a key as its own statement.
func (g *writers) redeemOne(w *write) {
	r := w.redeem
	ctx := watchCommits(w.ctx)
	t, err := scanToken(g.pool.QueryRow(ctx, redeemSQL, redeemArgs(w.ctx, r.id, r.hash, r.now)...))
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	g.settle(ctx, w, err, func() { w.out.token, w.out.matched = t, t.ID != "" })
}

// settle records the outcome of a lone write sent under ctx: done, handed
// back, or failed (also when it committed but is not known durable).
func (g *writers) settle(ctx context.Context, w *write, err error, done func()) {
	switch {
	case err == nil:
		if w.out.err = g.s.durable(ctx, w.kind.op()); w.out.err == nil {
			done()
		}
	case refused(err):
		w.out.alone = true
	default:
		w.out.err = g.s.fail(w.ctx, w.kind.op(), err)
	}
}

// refused reports whether err means the server rolled back what it was sent,
// or never received it, so that running it again cannot do anything twice:
// an error the server answered with (a refused statement, a cancel it
// confirmed), a connection that could not be made, and a context that ended
// before anything was sent. A lost connection, a driver timeout (the server
// never confirmed the cancel) and a FATAL error (the server ends the session,
// possibly after a commit, as when a synchronous replication wait is cut
// short) are not: the transaction may have committed.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		severity := cmp.Or(pgErr.SeverityUnlocalized, pgErr.Severity)
		return severity != "FATAL" && severity != "PANIC"
	}
	var connectErr *pgconn.ConnectError
	ctxErr := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
	return errors.As(err, &connectErr) || pgconn.SafeToRetry(err) || ctxErr && !pgconn.Timeout(err)
}

// createTokensSQL inserts one row per element of its arrays, which
// createArgs fills in insertTokenSQL's order, and records each one's created
// event with its own event context ($13 to $17: id, then the context).
var createTokensSQL = `
WITH changed AS (
INSERT INTO sign_in_tokens (id, user_id, org_id, status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at,
	redirect_url, metadata)
SELECT id, user_id, nullif(org_id, ''), status, ticket_hash,
	created_at, updated_at, expires_at, accepted_at, revoked_at,
	nullif(redirect_url, ''), nullif(metadata, '')::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
	$6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[],
	$11::text[], $12::text[])
	AS t(id, user_id, org_id, status, ticket_hash,
		created_at, updated_at, expires_at, accepted_at, revoked_at,
		redirect_url, metadata)
RETURNING *
), recorded AS (` + eventInsert(`FROM changed AS c
	JOIN unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::text[]) AS x(id, key, ip, user_agent, trace_id)
	ON x.id = c.id`, tokens.VerbCreated, "c.updated_at", "NULL",
	[4]string{"x.key", "x.ip", "x.user_agent", "x.trace_id"}) + `)
SELECT count(*) FROM changed`

// redeemTokensSQL is a group's redemptions in one statement: one (id, ticket
// hash, now) per element of its arrays, each accepted under the same
// conditions as alone, rows updated in the arrays' order (by id, so that
// two groups rarely wait on each other; a wait that does happen is cut
// short by lock_timeout). It records the accepted event of each, with the
// event context of its redemption ($4 to $7), and answers tokenColumns for
// each token it accepted.
var redeemTokensSQL = `
WITH accepted AS (
	UPDATE sign_in_tokens AS t
	SET status = 'accepted', accepted_at = r.rnow, updated_at = r.rnow
	FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[])
		AS r(rid, rhash, rnow, ekey, eip, eua, etrace)
	WHERE id = r.rid AND status = 'pending' AND ticket_hash = r.rhash AND expires_at > r.rnow
	RETURNING t.*, r.ekey, r.eip, r.eua, r.etrace
), recorded AS (` + eventInsert("FROM accepted AS c", tokens.VerbAccepted, "c.updated_at", "NULL",
	[4]string{"c.ekey", "c.eip", "c.eua", "c.etrace"}) + `)
SELECT ` + tokenColumns + ` FROM accepted`

// redeemKeyedTokensSQL is redeemTokensSQL for a group in which some
// redemptions carry an idempotency key ($4, empty for none, with its request
// hash $5): the key of each accepted token is recorded in the same
// statement. A key already stored fails the statement, and the group, on the
// key's primary key. It costs more than redeemTokensSQL, so it is sent only
// when a key is there.
var redeemKeyedTokensSQL = `
WITH accepted AS (
	UPDATE sign_in_tokens AS t
	SET status = 'accepted', accepted_at = r.now, updated_at = r.now
	FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::text[], $5::bytea[],
		$6::text[], $7::text[], $8::text[], $9::text[])
		AS r(id, ticket_hash, now, key, request_hash, ekey, eip, eua, etrace)
	WHERE t.id = r.id AND t.status = 'pending' AND t.ticket_hash = r.ticket_hash AND t.expires_at > r.now
	RETURNING t.*, r.key, r.request_hash, r.ekey, r.eip, r.eua, r.etrace
), claimed AS (
	INSERT INTO idempotency_keys (key, request_hash, token_id, created_at)
	SELECT key, request_hash, id, updated_at FROM accepted WHERE key <> ''
), recorded AS (` + eventInsert("FROM accepted AS c", tokens.VerbAccepted, "c.updated_at", "NULL",
	[4]string{"c.ekey", "c.eip", "c.eua", "c.etrace"}) + `)
SELECT ` + tokenColumns + `
FROM accepted`

// writeGroup sends writes, a group of them or one redemption with a key, in
// one transaction, and settles each: done, failed, or handed back.
func (g *writers) writeGroup(group []*write) {
	var creates, redeems []*write
	for _, w := range group {
		if w.kind == writeCreate {
			creates = append(creates, w)
		} else {
			redeems = append(redeems, w)
		}
	}
	// A second redemption of one token in the group runs alone after the
	// group commits, and finds the token accepted.
	slices.SortFunc(redeems, func(a, b *write) int { return strings.Compare(a.redeem.id, b.redeem.id) })
	kept := redeems[:0]
	for i, w := range redeems {
		if i > 0 && w.redeem.id == redeems[i-1].redeem.id {
			w.out.alone = true
			continue
		}
		kept = append(kept, w)
	}
	redeems = kept

	ctx, cancel := groupContext(group)
	defer cancel()
	ctx = watchCommits(ctx)
	var span trace.Span
	if g.tracer != nil {
		span = g.startGroupSpan(creates, redeems)
		defer span.End()
	}
	batch := &pgx.Batch{}
	if len(creates) > 0 {
		batch.Queue(createTokensSQL, createArgs(creates)...)
	}
	if len(redeems) > 0 {
		q := redeemGroupQuery(redeems)
		batch.Queue(q.SQL, q.Args...).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				t, err := scanToken(rows)
				if err != nil {
					return err
				}
				i, found := slices.BinarySearchFunc(redeems, t.ID, func(w *write, id string) int {
					return strings.Compare(w.redeem.id, id)
				})
				if found {
					redeems[i].out.token, redeems[i].out.matched = t, true
				}
			}
			return rows.Err()
		})
	}
	err := g.pool.SendBatch(ctx, batch).Close()
	if err == nil {
		if err = g.s.durable(ctx, "write a group of tokens"); err == nil {
			return
		}
		// Committed, perhaps on the primary alone: every caller shares the
		// commit, and none may be told it is done.
		for _, w := range group {
			w.out.token, w.out.matched, w.out.alone = tokens.Token{}, false, false
			w.out.err = err
		}
		return
	}
	if span != nil {
		span.SetAttributes(semconv.ErrorTypeOther)
		span.SetStatus(codes.Error, "group refused or lost") // the driver's message may quote a value
	}
	for _, w := range redeems {
		w.out.token, w.out.matched = tokens.Token{}, false // nothing of the group was committed
	}
	if refused(err) {
		for _, w := range group {
			w.out.alone = true
		}
		return
	}
	err = g.s.fail(ctx, "write a group of tokens", err)
	for _, w := range group {
		if !w.out.alone {
			w.out.err = err
		}
	}
}

// TracerName is the instrumentation scope of the writers' group spans.
const TracerName = "github.com/signin-tokens/signin-tokens/internal/store/postgres"

// startGroupSpan starts the span of one group's statements. A group serves
// requests of many traces, so, as OpenTelemetry's specification has it for
// batches, the group's span carries a link to the span of each write it
// sends, given when it starts (where a sampler can see them; a link added
// later to each request's span could not be). It is the child of the first
// sampled write's span, so a sampled request always finds its group in its
// own trace; with no write sampled it is a root of its own.
func (g *writers) startGroupSpan(creates, redeems []*write) trace.Span {
	links := make([]trace.Link, 0, len(creates)+len(redeems))
	parent := context.Background()
	hasParent := false
	for _, ws := range [][]*write{creates, redeems} {
		for _, w := range ws {
			sc := trace.SpanContextFromContext(w.ctx)
			if !sc.IsValid() {
				continue
			}
			links = append(links, trace.Link{SpanContext: sc})
			if !hasParent && sc.IsSampled() {
				parent, hasParent = trace.ContextWithSpanContext(parent, sc), true
			}
		}
	}
	op := "BATCH create redeem"
	switch {
	case len(redeems) == 0:
		op = "BATCH create"
	case len(creates) == 0:
		op = "BATCH redeem"
	}
	_, span := g.tracer.Start(parent, op+" sign_in_tokens",
		trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...))
	if span.IsRecording() {
		span.SetAttributes(semconv.DBSystemNamePostgreSQL, semconv.DBOperationName(op),
			semconv.DBCollectionName("sign_in_tokens"))
		if n := len(creates) + len(redeems); n > 1 {
			span.SetAttributes(semconv.DBOperationBatchSize(n))
		}
	}
	return span
}

// RedeemGroupQuery is the statement a group of redemptions of the tokens
// ids, with the tickets whose hashes are given, sends at now, without keys.
// Exported so the load tool explains the very statement the writers send.
func RedeemGroupQuery(ids []string, hashes [][]byte, now time.Time) Query {
	redeems := make([]*write, len(ids))
	for i := range ids {
		redeems[i] = &write{kind: writeRedeem, redeem: redemption{id: ids[i], hash: hashes[i], now: now}}
	}
	return redeemGroupQuery(redeems)
}

// redeemGroupQuery is the statement and arguments for redeems.
func redeemGroupQuery(redeems []*write) Query {
	n := len(redeems)
	ids, hashes, nows := make([]string, n), make([][]byte, n), make([]time.Time, n)
	keyed := false
	ctxs := make([]context.Context, n)
	for i, w := range redeems {
		ids[i], hashes[i], nows[i] = w.redeem.id, w.redeem.hash, w.redeem.now
		keyed = keyed || w.redeem.key != nil
		ctxs[i] = cmp.Or[context.Context](w.ctx, context.Background())
	}
	events := eventArrays(ctxs)
	if !keyed {
		return Query{SQL: redeemTokensSQL, Args: append([]any{ids, hashes, nows}, events...)}
	}
	keys, requests := make([]string, n), make([][]byte, n)
	for i, w := range redeems {
		if k := w.redeem.key; k != nil {
			keys[i], requests[i] = k.Key, k.RequestHash
		} else {
			requests[i] = []byte{}
		}
	}
	return Query{SQL: redeemKeyedTokensSQL, Args: append([]any{ids, hashes, nows, keys, requests}, events...)}
}

// eventArrays are the event contexts of ctxs as four arrays: keys, IPs,
// user agents and trace ids.
func eventArrays(ctxs []context.Context) []any {
	var out [4][]string
	for i := range out {
		out[i] = make([]string, len(ctxs))
	}
	for i, ctx := range ctxs {
		ec := tokens.EventContextFrom(ctx)
		out[0][i], out[1][i], out[2][i], out[3][i] = ec.Key, ec.IP, ec.UserAgent, ec.TraceID
	}
	return []any{out[0], out[1], out[2], out[3]}
}

// createArgs turns creates into createTokensSQL's arrays.
func createArgs(creates []*write) []any {
	n := len(creates)
	var (
		ids, users, orgs, statuses = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		hashes                     = make([][]byte, n)
		created, updated, expires  = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		accepted, revoked          = make([]*time.Time, n), make([]*time.Time, n)
		redirects, metadata        = make([]string, n), make([]string, n)
	)
	ctxs := make([]context.Context, n)
	for i, w := range creates {
		ctxs[i] = w.ctx
		t := w.create
		ids[i], users[i], orgs[i], statuses[i], hashes[i] = t.ID, t.UserID, t.OrgID, string(t.Status), t.TicketHash
		created[i], updated[i], expires[i], accepted[i], revoked[i] = t.CreatedAt, t.UpdatedAt, t.ExpiresAt, t.AcceptedAt, t.RevokedAt
		redirects[i], metadata[i] = t.RedirectURL, string(t.Metadata)
	}
	return append([]any{ids, users, orgs, statuses, hashes, created, updated, expires, accepted, revoked, redirects, metadata, ids},
		eventArrays(ctxs)...)
}

// groupContext is the context a group is sent under: a lone write keeps its
// caller's; a group carries no caller's cancellation, since one caller
// leaving must not fail the others, and ends at the earliest of the callers'
// deadlines, so that no caller waits past its own.
func groupContext(group []*write) (context.Context, context.CancelFunc) {
	if len(group) == 1 {
		return group[0].ctx, func() {}
	}
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
