package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Durability: a write is answered as done only once the database made it
// durable as configured.
//
// With synchronous replication a commit returns once the standby has it.
// But a backend told to cancel while it waits for the standby (our cancel
// request at a request's deadline, or an operator's pg_cancel_backend) can
// no longer undo the commit: PostgreSQL keeps it on the primary alone, sends
// the WARNING "canceling wait for synchronous replication due to user
// request" and reports success, and pgx returns no error. A failover can
// lose such a write, so it is answered ErrUnavailable (503, outcome
// unknown), never as done. Two checks, after the server answered without
// error:
//
//   - the notice: the connections' OnNotice marks the operation whose
//     connection got it (PrepareConn links each connection to the context
//     of the operation that takes it). It catches anyone's cancel, but reads
//     the message, which is English unless the server's lc_messages is not;
//   - the deadline: a write whose context ended before it returned had our
//     cancel request sent, which may have cut its wait short; this holds in
//     any language.
//
// Sending no cancel request for writes and bounding them by a server-side
// statement_timeout instead would not do: PostgreSQL switches
// statement_timeout off before the commit, so it never ends a replication
// wait, and a write would hold its connection for as long as the standby
// stalls, long after its caller was answered.

// commitWatch is one operation's record of what the server said about its
// commits.
type commitWatch struct {
	waitCanceled atomic.Bool // a commit's wait for the standby was canceled
}

type commitWatchKey struct{}

// customDataKey names the operation's commitWatch in a connection's
// CustomData.
const customDataKey = "signin-tokens.commit-watch"

// watchCommits gives ctx a commitWatch: the connections the operation takes
// under it report a canceled replication wait there.
func watchCommits(ctx context.Context) context.Context {
	return context.WithValue(ctx, commitWatchKey{}, &commitWatch{})
}

// linkCommitWatch is the pools' PrepareConn: it ties conn to the
// commitWatch of the operation taking it, or to none.
func linkCommitWatch(ctx context.Context, conn *pgx.Conn) (bool, error) {
	w, _ := ctx.Value(commitWatchKey{}).(*commitWatch)
	conn.PgConn().CustomData()[customDataKey] = w
	return true, nil
}

// noticeCanceledWait is the connections' OnNotice. It runs on the goroutine
// reading the connection's answer, before the statement returns.
func noticeCanceledWait(c *pgconn.PgConn, n *pgconn.Notice) {
	if !replicationWaitCanceled(n) {
		return
	}
	if w, _ := c.CustomData()[customDataKey].(*commitWatch); w != nil {
		w.waitCanceled.Store(true)
	}
}

// replicationWaitCanceled reports whether n is PostgreSQL's warning that a
// commit's wait for synchronous replication was canceled ("... due to user
// request", or "... and terminating connection", whose FATAL error follows).
func replicationWaitCanceled(n *pgconn.Notice) bool {
	severity := cmp.Or(n.SeverityUnlocalized, n.Severity)
	return severity == "WARNING" && strings.Contains(n.Message, "synchronous replication")
}

// durable checks a write under ctx (from watchCommits) that the server
// answered without error: nil if it is durable as configured, or
// ErrUnavailable when the outcome is unknown.
func (s *Store) durable(ctx context.Context, op string) error {
	w, _ := ctx.Value(commitWatchKey{}).(*commitWatch)
	var why string
	switch {
	case w != nil && w.waitCanceled.Load():
		why = "its commit's wait for the synchronous standby was canceled: it committed on the primary, perhaps not on the standby"
	case ctx.Err() != nil:
		why = "it returned after its deadline, and the cancel request may have cut its commit's wait for the standby short"
	default:
		return nil
	}
	s.unreplicated.Add(1)
	s.health.forget()
	if ctx.Err() != nil {
		return storeErr(ctx, op, fmt.Errorf("outcome unknown: %s", why))
	}
	return fmt.Errorf("%s: %w: outcome unknown: %s", op, tokens.ErrUnavailable, why)
}

// wrote is fail for a write's error, and durable when there is none.
func (s *Store) wrote(ctx context.Context, op string, err error) error {
	if err != nil {
		return s.fail(ctx, op, err)
	}
	return s.durable(ctx, op)
}

// Replication states, as the write probe last saw the primary's settings.
const (
	replicationUnknown int32 = iota
	replicationAsync         // no synchronous standby, or synchronous_commit below on
	replicationSync
)

// probeSQL is the write probe: one row updated (inserted if someone
// deleted it), a commit that waits for the synchronous standby like every
// write, and the settings that decide whether commits wait for one, as this
// service's sessions see them.
const probeSQL = `
INSERT INTO write_probe AS p (id, probed_at) VALUES (true, now())
ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at
RETURNING current_setting('synchronous_standby_names'), current_setting('synchronous_commit')`

// probeFresh is how long a probe's answer stands, so that readiness checks
// and writes, however frequent, cost the database at most one probe a
// second per replica.
const probeFresh = time.Second

// probeTimeout bounds one probe.
const probeTimeout = 2 * time.Second

// prober runs one probe at a time and keeps its answer for probeFresh.
type prober struct {
	mu      sync.Mutex
	at      time.Time     // when the last probe ended; zero: never
	err     error         // its answer
	running chan struct{} // closed when the probe under way ends; nil: none
}

// check answers from the last probe if it is fresh, else waits for the
// probe under way or runs one, under its own timeout.
func (p *prober) check(ctx context.Context, run func(context.Context) error) error {
	p.mu.Lock()
	if !p.at.IsZero() && time.Since(p.at) < probeFresh {
		err := p.err
		p.mu.Unlock()
		return err
	}
	wait := p.running
	if wait == nil {
		done := make(chan struct{})
		p.running = done
		p.mu.Unlock()
		// Under a context of its own: the caller's leaving must not become
		// the answer every other caller gets for a second.
		probeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
		err := run(probeCtx)
		cancel()
		p.mu.Lock()
		p.at, p.err, p.running = time.Now(), err, nil
		p.mu.Unlock()
		close(done)
		return err
	}
	p.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// forget drops the last answer, so the next check probes: a write that
// found the database unreachable must not leave readiness saying it is fine
// for up to a second.
func (p *prober) forget() {
	p.mu.Lock()
	p.at = time.Time{}
	p.mu.Unlock()
}

// errNotSynchronous is the answer while REQUIRE_SYNC_REPLICATION is set
// and the primary does not replicate synchronously.
var errNotSynchronous = errors.New("the primary does not replicate synchronously (synchronous_standby_names empty, or synchronous_commit below on), and synchronous replication is required")

// probeWrite makes one write and reads the replication settings.
func (s *Store) probeWrite(ctx context.Context) error {
	const op = "probe writes"
	ctx = watchCommits(ctx)
	var standbys, commit string
	if err := s.wrote(ctx, op, s.pool.QueryRow(ctx, probeSQL).Scan(&standbys, &commit)); err != nil {
		return err
	}
	state := replicationAsync
	if strings.TrimSpace(standbys) != "" && (commit == "on" || commit == "remote_apply") {
		state = replicationSync
	}
	s.replication.Store(state)
	if s.requireSync && state != replicationSync {
		return fmt.Errorf("%s: %w: %w (synchronous_standby_names %q, synchronous_commit %q)",
			op, tokens.ErrUnavailable, errNotSynchronous, standbys, commit)
	}
	return nil
}

// Ping reports whether the primary takes writes: a one-row write probe,
// whose answer stands for a second. A primary that answers reads but cannot
// commit (read-only, or waiting for a synchronous standby that does not
// answer) is not ready. With RequireSync it also fails while the primary
// does not replicate synchronously.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return storeErr(ctx, "ping", err)
	}
	err := s.health.check(ctx, s.probeWrite)
	if ctx.Err() != nil {
		return storeErr(ctx, "ping", ctx.Err())
	}
	return err
}

// checkSynchronous refuses a write while RequireSync is set and the primary,
// as last probed (at most a second ago), does not replicate synchronously.
func (s *Store) checkSynchronous(ctx context.Context, op string) error {
	if !s.requireSync {
		return nil
	}
	s.Ping(ctx) // refreshes the state; a probe that fails for another reason is the write's own business
	if s.replication.Load() != replicationSync {
		return fmt.Errorf("%s: %w: %w", op, tokens.ErrUnavailable, errNotSynchronous)
	}
	return nil
}

// confirm makes sure what a replayed answer reports is durable before it is
// answered again: the first answer may have been a 503 for a commit whose
// replication wait was canceled. A write committed now waits for the
// standby to have everything before it, that commit included.
func (s *Store) confirm(ctx context.Context) error {
	return s.probeWrite(ctx)
}

// ReplicationStats are the store's figures on durability.
type ReplicationStats struct {
	Required     bool  // RequireSync
	Known        bool  // a probe has read the settings
	Synchronous  bool  // the primary replicates synchronously, as last probed
	Unreplicated int64 // writes answered ErrUnavailable because their durability was unknown
}

// ReplicationStats returns the durability figures.
func (s *Store) ReplicationStats() ReplicationStats {
	st := s.replication.Load()
	return ReplicationStats{
		Required:     s.requireSync,
		Known:        st != replicationUnknown,
		Synchronous:  st == replicationSync,
		Unreplicated: s.unreplicated.Load(),
	}
}
