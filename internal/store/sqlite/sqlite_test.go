package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/store/storetest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// open returns a migrated store on a new file, closed when t ends.
func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) tokens.Store {
		return open(t, filepath.Join(t.TempDir(), "tokens.db"))
	})
}

func TestOpenCreatesDirectoryAndEscapesName(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new dir", "a?b#c%20d.db")
	open(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database file: got %v, want it to exist at %s", err, path)
	}
}

func TestPingBeforeMigrate(t *testing.T) {
	t.Parallel()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "empty.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping on an empty database: got %v, want nil", err)
	}
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "tokens.db"))
	if err := s.Migrate(context.Background()); err != nil {
		t.Errorf("second Migrate: got %v, want nil", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tokens.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tok := tokens.Token{ID: "sit_kept", UserID: "u", Status: tokens.StatusPending, TicketHash: []byte{1}}
	if _, err := s.Create(ctx, tokens.Creation{Token: tok}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path)
	if _, err := s.Get(ctx, tok.ID); err != nil {
		t.Errorf("Get after reopen: got %v, want nil", err)
	}
}

// TestPragmas checks every pooled connection gets the settings, not only the first.
func TestPragmas(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "tokens.db"))
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Ping(ctx); err != nil {
				t.Errorf("Ping: %v", err)
			}
		}()
	}
	wg.Wait()
	for _, tt := range sqlite.PragmasForTest(t, s) {
		if tt.Got != tt.Want {
			t.Errorf("PRAGMA %s: got %v, want %v", tt.Name, tt.Got, tt.Want)
		}
	}
}

func TestOpenUnusablePath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A directory where the file should be cannot be opened as a database.
	_, err := sqlite.Open(context.Background(), dir)
	if err == nil {
		t.Fatal("Open(a directory): got nil error, want an error")
	}
	if !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("got %v, want an error that is %v", err, tokens.ErrUnavailable)
	}
}

// TestWritesBeforeAndAfterMigrate: a write before the tables exist fails,
// and does not keep the store from preparing its statements once they do.
func TestWritesBeforeAndAfterMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "late.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	tok := tokens.Token{ID: tokens.KindSignIn.NewID(now), UserID: "user_1", Status: tokens.StatusPending,
		TicketHash: []byte("hash"), CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if _, err := s.Create(ctx, tokens.Creation{Token: tok}); err == nil {
		t.Fatal("Create before Migrate: got nil error, want one")
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, tokens.Creation{Token: tok}); err != nil {
		t.Fatalf("Create after Migrate: %v", err)
	}
	got, change, err := s.Redeem(ctx, tok.ID, tok.TicketHash, now, nil)
	if err != nil || change != tokens.Changed || got.Status != tokens.StatusAccepted {
		t.Fatalf("Redeem: got %v %v %v, want accepted, Changed, nil", got.Status, change, err)
	}
	if _, change, err := s.Redeem(ctx, tok.ID, tok.TicketHash, now, nil); err != nil || change != tokens.Unchanged {
		t.Fatalf("second Redeem: got %v %v, want Unchanged, nil", change, err)
	}
	if st := s.Stats(); st.MaxOpenConnections != 0 {
		t.Errorf("most connections: got %d, want 0 (no limit: the readers have none)", st.MaxOpenConnections)
	}
}
