package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// gate is a tokens.Store that answers ErrUnavailable until the real store is
// open, so the process can serve /healthz and report /readyz while its
// database is still out of reach.
type gate struct {
	st      atomic.Pointer[tokens.Store]
	lastErr atomic.Pointer[error]

	mu     sync.Mutex // orders open against take
	closed bool       // taken: a store that opens now is closed at once
}

func newGate() *gate { return &gate{} }

// open lets requests through to st; once the gate is closed, a store that
// connects late (the database came back as shutdown began) is closed instead.
func (g *gate) open(st tokens.Store) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		st.Close()
		return
	}
	g.st.Store(&st)
}

// take closes the gate and returns its store, or nil if none opened.
func (g *gate) take() tokens.Store {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	if p := g.st.Swap(nil); p != nil {
		return *p
	}
	return nil
}

func (g *gate) fail(err error) { g.lastErr.Store(&err) }

func (g *gate) store() (tokens.Store, error) {
	if p := g.st.Load(); p != nil {
		return *p, nil
	}
	if e := g.lastErr.Load(); e != nil {
		return nil, fmt.Errorf("%w: not connected yet: %v", tokens.ErrUnavailable, *e)
	}
	return nil, fmt.Errorf("%w: not connected yet", tokens.ErrUnavailable)
}

func (g *gate) Create(ctx context.Context, t tokens.Token) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	return st.Create(ctx, t)
}

func (g *gate) CreateIdempotent(ctx context.Context, t tokens.Token, key string, hash []byte, notBefore time.Time) (tokens.Token, bool, error) {
	st, err := g.store()
	if err != nil {
		return tokens.Token{}, false, err
	}
	return st.CreateIdempotent(ctx, t, key, hash, notBefore)
}

func (g *gate) Get(ctx context.Context, id string) (tokens.Token, error) {
	st, err := g.store()
	if err != nil {
		return tokens.Token{}, err
	}
	return st.Get(ctx, id)
}

func (g *gate) List(ctx context.Context, f tokens.ListFilter) ([]tokens.Token, int, error) {
	st, err := g.store()
	if err != nil {
		return nil, 0, err
	}
	return st.List(ctx, f)
}

func (g *gate) Revoke(ctx context.Context, id string, now time.Time) (tokens.Token, bool, error) {
	st, err := g.store()
	if err != nil {
		return tokens.Token{}, false, err
	}
	return st.Revoke(ctx, id, now)
}

func (g *gate) Redeem(ctx context.Context, id string, hash []byte, now time.Time) (tokens.Token, bool, error) {
	st, err := g.store()
	if err != nil {
		return tokens.Token{}, false, err
	}
	return st.Redeem(ctx, id, hash, now)
}

func (g *gate) DeleteFinished(ctx context.Context, cutoff, keysCutoff time.Time, limit int) (int, error) {
	st, err := g.store()
	if err != nil {
		return 0, err
	}
	return st.DeleteFinished(ctx, cutoff, keysCutoff, limit)
}

func (g *gate) Ping(ctx context.Context) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	return st.Ping(ctx)
}

// Close closes the store once; later calls, and calls before it opened, do
// nothing.
func (g *gate) Close() error {
	if st := g.take(); st != nil {
		return st.Close()
	}
	return nil
}

// closeWithin closes the store as Close does, but waits no longer than ctx
// allows: closing waits for the connections in use, and a database that
// stopped answering must not hold the process past its shutdown grace. The
// close goes on in the background if it takes longer.
func (g *gate) closeWithin(ctx context.Context) {
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
