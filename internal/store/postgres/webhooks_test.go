package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/store/storetest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// relayInto is an enqueue for RelayEvents that records each event's token
// in the table relayed, in the relay's transaction; relayed's primary key
// refuses an event enqueued twice.
func relayInto(ctx context.Context, tx pgx.Tx, ids []string) error {
	for _, id := range ids {
		xid, seq, _ := tokens.ParseEventID(id)
		if _, err := tx.Exec(ctx, `INSERT INTO relayed (event_id, token_id)
			SELECT $1, token_id FROM events WHERE (xid, seq) = ($2, $3)`, id, int64(xid), int64(seq)); err != nil {
			return err
		}
	}
	return nil
}

func relayedTokens(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT token_id FROM relayed ORDER BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// relaySetup is a store, a connection of the test's own, and the relayed
// table.
func relaySetup(t *testing.T, o postgres.Options) (*postgres.Store, *pgx.Conn) {
	t.Helper()
	dbURL := pgtest.URL(t)
	s := openWith(t, dbURL, o)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, err := conn.Exec(ctx, "CREATE TABLE relayed (event_id text PRIMARY KEY, token_id text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return s, conn
}

// TestRelayHoldsBackUncommitted: the relay never passes an event whose
// transaction is still open, though it has the smallest id, relays it once
// it commits, in order, never relays one that rolled back, and an enqueue
// that fails leaves the cursor where it was.
func TestRelayHoldsBackUncommitted(t *testing.T) {
	t.Parallel()
	s, conn := relaySetup(t, postgres.Options{Writers: postgres.DefaultWriters})
	ctx := context.Background()
	relay := func() {
		t.Helper()
		for {
			n, err := s.RelayEvents(ctx, 2, relayInto)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
		}
	}
	if err := createPlain(ctx, s, pending("sit_first")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first event relayed", func() bool { relay(); return len(relayedTokens(t, conn)) == 1 })

	insertEvent := func(tx pgx.Tx, id string) {
		t.Helper()
		if _, err := tx.Exec(ctx, `INSERT INTO events (type, token_id, user_id, created_at, token)
			VALUES ('sign_in_token.created', $1, 'user_held', now(), jsonb_build_object('id', $1::text,
				'user_id', 'user_held', 'status', 'pending', 'created_at', now(), 'updated_at', now(), 'expires_at', now()))`, id); err != nil {
			t.Fatal(err)
		}
	}
	other, err := pgx.Connect(ctx, pgtest.WithParam(t, conn.Config().ConnString(), "application_name", "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	held, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx)
	insertEvent(held, "sit_held")
	rolledBack, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	insertEvent(rolledBack, "sit_rolled_back")
	if err := rolledBack.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := createPlain(ctx, s, pending(fmt.Sprintf("sit_after_%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	relay()
	if got := relayedTokens(t, conn); len(got) != 1 {
		t.Fatalf("relayed while an older transaction was open: %v, want only sit_first", got)
	}
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// An enqueue that fails commits nothing, and moves no cursor.
	failed := errors.New("queue refused")
	waitFor(t, "a relay attempt", func() bool {
		_, err := s.RelayEvents(ctx, 10, func(context.Context, pgx.Tx, []string) error { return failed })
		return errors.Is(err, failed)
	})
	waitFor(t, "every event relayed", func() bool { relay(); return len(relayedTokens(t, conn)) == 5 })
	checkGetEvent(t, s, conn)
	want := "[sit_first sit_held sit_after_0 sit_after_1 sit_after_2]"
	if got := fmt.Sprint(relayedTokens(t, conn)); got != want {
		t.Errorf("relayed: got %s, want %s", got, want)
	}
}

// TestRelayConcurrent: relays racing each other while grouped writers
// create and redeem enqueue every event exactly once (relayed's key would
// refuse a second time, and fail that relay).
func TestRelayConcurrent(t *testing.T) {
	t.Parallel()
	s, conn := relaySetup(t, postgres.Options{Writers: 2})
	ctx := context.Background()
	const writers, each = 4, 25
	wait := createAndRedeem(t, s, writers, each, "sit_relay")
	stop := storetest.RaceRelays(t, 3, func() error {
		_, err := s.RelayEvents(ctx, 7, relayInto)
		return err
	})
	wait()
	waitFor(t, "every event relayed", func() bool { return len(relayedTokens(t, conn)) >= 2*writers*each })
	stop()
	if got := len(relayedTokens(t, conn)); got != 2*writers*each {
		t.Errorf("relayed %d events, want %d", got, 2*writers*each)
	}
}

// checkGetEvent: GetEvent reads each relayed event by its id, and answers
// ErrNotFound for an id no event has.
func checkGetEvent(t *testing.T, s *postgres.Store, conn *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, "SELECT event_id, token_id FROM relayed")
	if err != nil {
		t.Fatal(err)
	}
	pairs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2]string, error) {
		var p [2]string
		return p, row.Scan(&p[0], &p[1])
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		e, err := s.GetEvent(ctx, p[0])
		if err != nil || e.ID != p[0] || e.Token.ID != p[1] || e.Type != "sign_in_token.created" {
			t.Errorf("GetEvent(%s): got %+v, %v, want the created event of %s", p[0], e, err, p[1])
		}
	}
	for _, id := range []string{tokens.NewEventID(1, 1), "evt_bad"} {
		if _, err := s.GetEvent(ctx, id); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("GetEvent(%s): got %v, want ErrNotFound", id, err)
		}
	}
}
