package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestSweepDeletesOnlyWhatRetentionAllows runs the real retention loop over
// more finished tokens than one batch holds.
func TestSweepDeletesOnlyWhatRetentionAllows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sweep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	old := now.Add(-48 * time.Hour)
	put := func(created, expires time.Time, finish func(id string)) string {
		tok := tokens.Token{ID: tokens.KindSignIn.NewID(time.Now()), UserID: "u", Status: tokens.StatusPending, TicketHash: []byte{1},
			CreatedAt: created, UpdatedAt: created, ExpiresAt: expires}
		if _, err := st.Create(ctx, tokens.Creation{Token: tok}); err != nil {
			t.Fatal(err)
		}
		if finish != nil {
			finish(tok.ID)
		}
		return tok.ID
	}
	revokeAt := func(at time.Time) func(string) {
		return func(id string) {
			if _, change, err := st.Revoke(ctx, id, at, nil); err != nil || change != tokens.Changed {
				t.Fatalf("revoke: %v %v", change, err)
			}
		}
	}
	var gone, kept []string
	for i := 0; i < 1200; i++ { // more than two batches of 500
		gone = append(gone, put(old, old.Add(time.Hour), nil)) // expired long ago
	}
	gone = append(gone, put(old, old.Add(time.Hour), revokeAt(old))) // revoked and expired long ago
	kept = append(kept,
		put(old, now.Add(time.Hour), nil),           // pending, not expired
		put(now, now.Add(-time.Minute), nil),        // expired just now
		put(old, now.Add(time.Hour), revokeAt(now)), // revoked just now
		put(old, now.Add(time.Hour), revokeAt(old)), // revoked long ago, not expired: kept until it expires
	)

	go sweep(ctx, st, retention{tokens: 24 * time.Hour, events: 24 * time.Hour}, 10*time.Millisecond, zerolog.New(io.Discard))
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, total, err := st.List(ctx, tokens.ListFilter{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if total == len(kept) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokens left: got %d, want %d", total, len(kept))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range kept {
		if _, err := st.Get(ctx, id); err != nil {
			t.Errorf("kept token %s: %v", id, err)
		}
	}
	// The events of the last day stay: the last two tokens' creation and revoke.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		list, _, err := st.ListEvents(ctx, tokens.EventFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 2 {
			if list[0].Type != "sign_in_token.created" || list[0].Token.ID != kept[1] || list[1].Type != "sign_in_token.revoked" || list[1].Token.ID != kept[2] {
				t.Errorf("events kept: %s %s, %s %s", list[0].Type, list[0].Token.ID, list[1].Type, list[1].Token.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events left: got %d, want 2", len(list))
		}
	}
	for _, id := range gone[len(gone)-2:] {
		if _, err := st.Get(ctx, id); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("deleted token %s: got %v, want not found", id, err)
		}
	}
}
