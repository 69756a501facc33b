package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/store/storetest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// open returns a migrated store on the database at dbURL, with grouped
// writes as the service runs it, closed when t ends.
func open(t *testing.T, dbURL string) *postgres.Store {
	t.Helper()
	return openWith(t, dbURL, postgres.Options{Writers: postgres.DefaultWriters})
}

func openWith(t *testing.T, dbURL string, o postgres.Options) *postgres.Store {
	t.Helper()
	ctx := context.Background()
	s, err := postgres.Open(ctx, dbURL, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
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
		return open(t, pgtest.URL(t))
	})
}

// TestContractUngrouped runs the contract with every write on its own, as
// DATABASE_WRITERS=0 does.
func TestContractUngrouped(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) tokens.Store {
		return openWith(t, pgtest.URL(t), postgres.Options{})
	})
}

// TestMigrateConcurrently starts several replicas on one schema at once:
// the advisory lock lets one migrate and the others find nothing to do.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	ctx := context.Background()
	const replicas = 4
	stores := make([]*postgres.Store, replicas)
	for i := range stores {
		s, err := postgres.Open(ctx, dbURL, postgres.Options{Writers: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	errs := make([]error, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.Migrate(ctx)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d Migrate: got %v, want nil", i, err)
		}
	}
	if err := createPlain(ctx, stores[0], tokens.Token{ID: "sit_after_migrate", UserID: "u",
		Status: tokens.StatusPending, TicketHash: []byte{1}}); err != nil {
		t.Errorf("Create after migrations: %v", err)
	}
}

// TestSearchPath checks the tables land in the schema the URL names.
func TestSearchPath(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	open(t, dbURL)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var schema string
	err = conn.QueryRow(ctx, `SELECT table_schema FROM information_schema.tables WHERE table_name = 'sign_in_tokens' AND table_schema = current_schema()`).Scan(&schema)
	if err != nil {
		t.Fatalf("sign_in_tokens in the current schema: %v", err)
	}
	u, _ := url.Parse(dbURL)
	if want := u.Query().Get("search_path"); schema != want {
		t.Errorf("schema: got %q, want %q", schema, want)
	}
}

func TestPoolMaxConnsParam(t *testing.T) {
	t.Parallel()
	s := open(t, pgtest.WithParam(t, pgtest.URL(t), "pool_max_conns", "1"))
	// Work that needs a connection at a time still finishes on a pool of one.
	redeemOnce(t, s)
	if got := postgres.MaxConnsForTest(s); got != 1 {
		t.Errorf("pool max conns: got %d, want 1", got)
	}
}

func redeemOnce(t *testing.T, s *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	tok := pending("sit_one")
	if err := createPlain(ctx, s, tok); err != nil {
		t.Fatal(err)
	}
	if _, change, err := s.Redeem(ctx, tok.ID, tok.TicketHash, groupNow, nil); err != nil || change != tokens.Changed {
		t.Fatalf("Redeem: got %v, %v; want Changed, nil", change, err)
	}
	if _, change, err := s.Redeem(ctx, tok.ID, tok.TicketHash, groupNow, nil); err != nil || change != tokens.Unchanged {
		t.Fatalf("second Redeem: got %v, %v; want Unchanged, nil", change, err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens, the dial is refused at once.
	_, err := postgres.Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", postgres.Options{})
	if !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("got %v, want an error that is %v", err, tokens.ErrUnavailable)
	}
}

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	_, err := postgres.Open(context.Background(), "postgres://u:secret@host:notaport/db", postgres.Options{})
	if err == nil {
		t.Fatal("got nil error, want one")
	}
	if errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("got %v, want an error that is not %v", err, tokens.ErrUnavailable)
	}
}

// lockRow stores tok and holds a row lock on it from a connection of its
// own, so that a Redeem of it waits in the database until the returned
// transaction ends.
func lockRow(t *testing.T, dbURL string, s *postgres.Store, tok tokens.Token) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	if err := createPlain(ctx, s, tok); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM sign_in_tokens WHERE id = $1 FOR UPDATE", tok.ID); err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestConnectionLostMidQuery kills the server process serving a Redeem while
// it waits: the error must say the database is unavailable.
func TestConnectionLostMidQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := pgtest.URL(t)
	appName := "conn-lost-" + time.Now().Format("150405.000000000")
	dbURL := pgtest.WithParam(t, base, "application_name", appName)
	s := open(t, dbURL)
	tok := pending("sit_locked")
	tx := lockRow(t, base, s, tok)
	defer tx.Rollback(ctx)

	done := make(chan error, 1)
	go func() {
		_, _, err := s.Redeem(ctx, tok.ID, tok.TicketHash, tok.CreatedAt, nil)
		done <- err
	}()
	// Wait until the Redeem waits on the lock, then end its backend.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var killed bool
		err := tx.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false)
			FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, appName).Scan(&killed)
		if err != nil {
			t.Fatal(err)
		}
		if killed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Redeem never waited on the row lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-done; !errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("got %v, want an error that is %v", err, tokens.ErrUnavailable)
	}
}

// TestCallerCancels checks a caller giving up is not reported as the
// database being unavailable.
func TestCallerCancels(t *testing.T) {
	t.Parallel()
	base := pgtest.URL(t)
	s := open(t, base)
	tok := pending("sit_locked")
	tx := lockRow(t, base, s, tok)
	defer tx.Rollback(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, _, err := s.Redeem(ctx, tok.ID, tok.TicketHash, tok.CreatedAt, nil)
	if err == nil {
		t.Fatal("got nil error, want the cancellation")
	}
	if errors.Is(err, tokens.ErrUnavailable) {
		t.Errorf("got %v, want an error that is not %v", err, tokens.ErrUnavailable)
	}
}

// createPlain creates t with nothing else, as most creates are.
func createPlain(ctx context.Context, s *postgres.Store, t tokens.Token) error {
	_, err := s.Create(ctx, tokens.Creation{Token: t})
	return err
}

// TestNoIndexOnChangedColumns keeps redemptions and revokes HOT updates: a
// change can stay on its heap page, without new index entries, only when no
// index covers a column it sets, in its keys, expressions or predicate.
func TestNoIndexOnChangedColumns(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	open(t, dbURL)
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(),
		`SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'sign_in_tokens'::regclass`)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Name, Def string }])
	if err != nil {
		t.Fatal(err)
	}
	changed := regexp.MustCompile(`\b(status|updated_at|accepted_at|revoked_at)\b`)
	for _, d := range defs {
		if c := changed.FindString(d.Def); c != "" {
			t.Errorf("index %s covers %s, which redemptions or revokes change: %s", d.Name, c, d.Def)
		}
	}
	if len(defs) == 0 {
		t.Error("no index on sign_in_tokens found")
	}
}
