package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Gate is a tokens.Store that answers tokens.ErrUnavailable until the real
// store is open, so the process can serve /healthz and report /readyz while
// its database is still out of reach. It is a Stats, reporting the open
// store's figures.
type Gate struct {
	st      atomic.Pointer[tokens.Store]
	lastErr atomic.Pointer[error]

	mu     sync.Mutex // orders Open against take
	closed bool       // taken: a store that opens now is closed at once
}

var (
	_ tokens.Store = (*Gate)(nil)
	_ Stats        = (*Gate)(nil)
)

// NewGate returns a Gate with no store behind it yet.
func NewGate() *Gate { return &Gate{} }

// Open lets requests through to st; once the gate is closed, a store that
// connects late (the database came back as shutdown began) is closed instead.
func (g *Gate) Open(st tokens.Store) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		st.Close()
		return
	}
	g.st.Store(&st)
}

// take closes the gate and returns its store, or nil if none opened.
func (g *Gate) take() tokens.Store {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	if p := g.st.Swap(nil); p != nil {
		return *p
	}
	return nil
}

// Fail records why the store could not be opened yet; requests answered
// while the gate waits say so.
func (g *Gate) Fail(err error) { g.lastErr.Store(&err) }

// store returns the open store, or ErrUnavailable with the last failure.
func (g *Gate) store() (tokens.Store, error) {
	if p := g.st.Load(); p != nil {
		return *p, nil
	}
	if e := g.lastErr.Load(); e != nil {
		return nil, fmt.Errorf("%w: not connected yet: %v", tokens.ErrUnavailable, *e)
	}
	return nil, fmt.Errorf("%w: not connected yet", tokens.ErrUnavailable)
}

// Create passes to the open store's Create.
func (g *Gate) Create(ctx context.Context, c tokens.Creation) (tokens.CreateResult, error) {
	st, err := g.store()
	if err != nil {
		return tokens.CreateResult{}, err
	}
	return st.Create(ctx, c)
}

// RevokeUser passes to the open store's RevokeUser.
func (g *Gate) RevokeUser(ctx context.Context, kind tokens.Kind, userID string, now time.Time) ([]tokens.Token, error) {
	st, err := g.store()
	if err != nil {
		return nil, err
	}
	return st.RevokeUser(ctx, kind, userID, now)
}

// RedeemCode passes to the open store's RedeemCode.
func (g *Gate) RedeemCode(ctx context.Context, r tokens.CodeRedemption) (tokens.Token, tokens.CodeOutcome, error) {
	st, err := g.store()
	if err != nil {
		return tokens.Token{}, 0, err
	}
	return st.RedeemCode(ctx, r)
}

// Get passes to the open store's Get.
func (g *Gate) Get(ctx context.Context, id string) (tokens.Token, error) {
	st, err := g.store()
	if err != nil {
		return tokens.Token{}, err
	}
	return st.Get(ctx, id)
}

// List passes to the open store's List.
func (g *Gate) List(ctx context.Context, f tokens.ListFilter) ([]tokens.Token, int, error) {
	st, err := g.store()
	if err != nil {
		return nil, 0, err
	}
	return st.List(ctx, f)
}

// Revoke passes to the open store's Revoke.
func (g *Gate) Revoke(ctx context.Context, id string, now time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	st, err := g.store()
	if err != nil {
		return tokens.Token{}, tokens.Unchanged, err
	}
	return st.Revoke(ctx, id, now, key)
}

// Redeem passes to the open store's Redeem.
func (g *Gate) Redeem(ctx context.Context, id string, hash []byte, now time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	st, err := g.store()
	if err != nil {
		return tokens.Token{}, tokens.Unchanged, err
	}
	return st.Redeem(ctx, id, hash, now, key)
}

// DeleteFinished passes to the open store's DeleteFinished.
func (g *Gate) DeleteFinished(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	st, err := g.store()
	if err != nil {
		return 0, err
	}
	return st.DeleteFinished(ctx, cutoff, limit)
}

// DeleteIdempotencyKeys passes to the open store's DeleteIdempotencyKeys.
func (g *Gate) DeleteIdempotencyKeys(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	st, err := g.store()
	if err != nil {
		return 0, err
	}
	return st.DeleteIdempotencyKeys(ctx, cutoff, limit)
}

// AppendEvent passes to the open store's AppendEvent.
func (g *Gate) AppendEvent(ctx context.Context, e tokens.Event) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	return st.AppendEvent(ctx, e)
}

// ListEvents passes to the open store's ListEvents.
func (g *Gate) ListEvents(ctx context.Context, f tokens.EventFilter) ([]tokens.Event, bool, error) {
	st, err := g.store()
	if err != nil {
		return nil, false, err
	}
	return st.ListEvents(ctx, f)
}

// DeleteEvents passes to the open store's DeleteEvents.
func (g *Gate) DeleteEvents(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	st, err := g.store()
	if err != nil {
		return 0, err
	}
	return st.DeleteEvents(ctx, cutoff, limit)
}

// Ping passes to the open store's Ping: ErrUnavailable until it opens.
func (g *Gate) Ping(ctx context.Context) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	return st.Ping(ctx)
}

// Close closes the store once; later calls, and calls before it opened, do
// nothing.
func (g *Gate) Close() error {
	if st := g.take(); st != nil {
		return st.Close()
	}
	return nil
}

// CloseWithin closes the store as Close does, but waits no longer than ctx
// allows: closing waits for the connections in use, and a database that
// stopped answering must not hold the process past its shutdown grace. The
// close goes on in the background if it takes longer.
func (g *Gate) CloseWithin(ctx context.Context) {
	st := g.take()
	if st == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		st.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// PoolStats reports the open store's figures (see PoolStatsOf); it answers
// false while the database is still being connected.
func (g *Gate) PoolStats() (PoolStats, bool) {
	p := g.st.Load()
	if p == nil {
		return PoolStats{}, false
	}
	return PoolStatsOf(*p)
}
