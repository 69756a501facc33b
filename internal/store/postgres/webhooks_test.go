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
func relayInto(ctx context.Context, tx pgx.Tx, events []tokens.Event) error {
	for _, e := range events {
		if _, err := tx.Exec(ctx, "INSERT INTO relayed (event_id, token_id) VALUES ($1, $2)", e.ID, e.Token.ID); err != nil {
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
			n, err := storetest.RelayOnce[pgx.Tx](ctx, s, 2, relayInto)
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
		_, err := storetest.RelayOnce[pgx.Tx](ctx, s, 10, func(context.Context, pgx.Tx, []tokens.Event) error { return failed })
		return errors.Is(err, failed)
	})
	waitFor(t, "every event relayed", func() bool { relay(); return len(relayedTokens(t, conn)) == 5 })
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
		_, err := storetest.RelayOnce[pgx.Tx](ctx, s, 7, relayInto)
		return err
	})
	wait()
	waitFor(t, "every event relayed", func() bool { return len(relayedTokens(t, conn)) >= 2*writers*each })
	stop()
	if got := len(relayedTokens(t, conn)); got != 2*writers*each {
		t.Errorf("relayed %d events, want %d", got, 2*writers*each)
	}
}

// TestRelayLease: of two stores on one schema, the first to ask holds the
// relay lease and keeps it; the other is refused until the holder's
// session ends, then takes it over; a store on another schema has a lease
// of its own; and RelayEvents moves the cursor past a peeked batch only
// from where the peek found it.
func TestRelayLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.WithParam(t, pgtest.URL(t), "pool_max_conns", "2")
	first := openWith(t, dbURL, postgres.Options{})
	second := openWith(t, dbURL, postgres.Options{})
	other := openWith(t, pgtest.WithParam(t, pgtest.URL(t), "pool_max_conns", "2"), postgres.Options{})
	ask := func(s *postgres.Store) bool {
		t.Helper()
		held, err := s.HoldRelayLease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	if !ask(first) || !ask(first) {
		t.Fatal("the first store does not hold the lease")
	}
	if ask(second) {
		t.Fatal("a second store on the same schema holds the lease too")
	}
	if !ask(other) {
		t.Fatal("a store on another schema is refused the lease")
	}
	first.Close()
	// The lock goes when the holder's backend has ended, just after Close.
	waitFor(t, "the lease taken over once its holder closed", func() bool { return ask(second) })

	wait := createAndRedeem(t, second, 1, 3, "sit_peek")
	wait()
	// Another test's open transaction may hold the events back for a while
	// (they are read below the snapshot's xmin).
	var after string
	var peeked []tokens.Event
	waitFor(t, "4 events to peek at", func() bool {
		var err error
		if after, peeked, err = second.PeekEvents(ctx, 4); err != nil {
			t.Fatal(err)
		}
		return len(peeked) == 4
	})
	// A batch whose cursor moved since the peek is refused, and enqueues
	// nothing.
	enqueued := 0
	count := func(context.Context, pgx.Tx) error { enqueued++; return nil }
	if moved, err := second.RelayEvents(ctx, tokens.NewEventID(1, 1), peeked, count); err != nil || moved || enqueued != 0 {
		t.Fatalf("a stale cursor: moved %v, enqueued %d (%v), want neither", moved, enqueued, err)
	}
	if moved, err := second.RelayEvents(ctx, after, peeked, count); err != nil || !moved || enqueued != 1 {
		t.Fatalf("moved %v, enqueued %d (%v), want the batch relayed", moved, enqueued, err)
	}
	if _, left, err := second.PeekEvents(ctx, 4); err != nil || len(left) != 2 || left[0].ID <= peeked[3].ID {
		t.Errorf("after the relay, peeked %d events (%v), want the 2 after the batch", len(left), err)
	}
}
