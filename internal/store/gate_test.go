package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestGateClosesALateStore: a store that connects after shutdown began is
// closed, not left open behind a closed gate.
func TestGateClosesALateStore(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g := NewGate()
	g.Close()
	g.Open(st)
	if err := st.Ping(ctx); err == nil {
		t.Error("store opened after the gate closed: still open, want closed")
	}
	if err := g.Ping(ctx); !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("closed gate: got %v, want ErrUnavailable", err)
	}
}
