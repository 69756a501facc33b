package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestReadOnlyServer: a server that answers but takes no writes (a standby
// behind a stale address, a demoted primary) fails readiness and every
// write with ErrUnavailable (503), never an internal error.
func TestReadOnlyServer(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	open(t, dbURL) // migrated while writable
	for _, writers := range []int{0, postgres.DefaultWriters} {
		s := openWith(t, pgtest.WithParam(t, dbURL, "default_transaction_read_only", "on"), postgres.Options{Writers: writers})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Ping(ctx); !errors.Is(err, tokens.ErrUnavailable) {
			t.Errorf("writers %d: Ping: got %v, want ErrUnavailable", writers, err)
		}
		now := time.Now()
		tok := tokens.Token{ID: tokens.KindSignIn.NewID(now), UserID: "user_1", Status: tokens.StatusPending, TicketHash: []byte("h"),
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := s.Create(ctx, tokens.Creation{Token: tok}); !errors.Is(err, tokens.ErrUnavailable) {
			t.Errorf("writers %d: Create: got %v, want ErrUnavailable", writers, err)
		}
		if _, _, err := s.Redeem(ctx, tok.ID, []byte("h"), now, nil); err == nil {
			t.Errorf("writers %d: Redeem of a token never stored on a read-only server: got nil error", writers)
		}
	}
}

// TestRequireSyncReplication: on a primary without a synchronous standby
// (TEST_DATABASE_URL's), RequireSync fails readiness and refuses every
// write with ErrUnavailable, and the figures say why; without it the same
// primary is ready and reported asynchronous.
func TestRequireSyncReplication(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	plain := open(t, dbURL)
	var standbys string
	if err := plain.QueryRowForTest(ctx, `SELECT current_setting('synchronous_standby_names')`).Scan(&standbys); err != nil {
		t.Fatal(err)
	}
	if standbys != "" {
		t.Fatalf("TEST_DATABASE_URL's primary has synchronous_standby_names %q: this test needs one without", standbys)
	}
	if err := plain.Ping(ctx); err != nil {
		t.Fatalf("Ping without RequireSync: %v", err)
	}
	if got := plain.ReplicationStats(); !got.Known || got.Synchronous || got.Required {
		t.Errorf("without RequireSync: got %+v, want known, asynchronous, not required", got)
	}

	s := openWith(t, dbURL, postgres.Options{Writers: postgres.DefaultWriters, RequireSync: true})
	err := s.Ping(ctx)
	if !errors.Is(err, tokens.ErrUnavailable) || !strings.Contains(err.Error(), "synchronous") {
		t.Errorf("Ping with RequireSync: got %v, want ErrUnavailable naming synchronous replication", err)
	}
	now := time.Now()
	tok := tokens.Token{ID: tokens.KindSignIn.NewID(now), UserID: "user_1", Status: tokens.StatusPending, TicketHash: []byte("h"),
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := s.Create(ctx, tokens.Creation{Token: tok}); !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("Create with RequireSync: got %v, want ErrUnavailable", err)
	}
	if _, err := plain.Create(ctx, tokens.Creation{Token: tok}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Redeem(ctx, tok.ID, []byte("h"), now, nil); !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("Redeem with RequireSync: got %v, want ErrUnavailable", err)
	}
	if _, _, err := s.Revoke(ctx, tok.ID, now, nil); !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("Revoke with RequireSync: got %v, want ErrUnavailable", err)
	}
	if got, err := plain.Get(ctx, tok.ID); err != nil || got.Status != tokens.StatusPending {
		t.Errorf("the token after refused writes: got %v, %v, want pending", got.Status, err)
	}
	if got := s.ReplicationStats(); !got.Known || got.Synchronous || !got.Required {
		t.Errorf("with RequireSync: got %+v, want known, asynchronous, required", got)
	}
}
