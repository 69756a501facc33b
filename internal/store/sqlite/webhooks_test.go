package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/storetest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// relayInto records each event's token in the table relayed, in the
// relay's transaction; relayed's primary key refuses an event enqueued
// twice.
func relayInto(ctx context.Context, tx *sql.Tx, events []tokens.Event) error {
	for _, e := range events {
		if _, err := tx.ExecContext(ctx, "INSERT INTO relayed (event_id, token_id) VALUES (?, ?)", e.ID, e.Token.ID); err != nil {
			return err
		}
	}
	return nil
}

// TestRelay: relays racing each other while writers create and redeem
// enqueue every event exactly once, in order; an enqueue that fails moves
// no cursor; and the change of a transaction that rolled back is never
// relayed.
func TestRelay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.db")
	s := open(t, path)
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE relayed (event_id TEXT PRIMARY KEY, token_id TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	relayed := func() []string {
		t.Helper()
		rows, err := db.Query("SELECT token_id FROM relayed ORDER BY event_id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	create := func(id string) tokens.Token {
		tok := tokens.Token{ID: id, UserID: "user_" + id, Status: tokens.StatusPending, TicketHash: tokens.HashTicket(id),
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := s.Create(ctx, tokens.Creation{Token: tok}); err != nil {
			t.Errorf("Create: %v", err)
		}
		return tok
	}

	// A change that rolls back: its event goes with it.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO events (type, token_id, user_id, created_at, token) VALUES ('sign_in_token.created', 'sit_gone', 'u', 0, '{}')`); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	failed := errors.New("queue refused")
	create("sit_first")
	if _, err := storetest.RelayOnce[*sql.Tx](ctx, s, 10, func(context.Context, *sql.Tx, []tokens.Event) error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("failing enqueue: got %v, want %v", err, failed)
	}

	const writers, each = 3, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tok := create(fmt.Sprintf("sit_relay_%d_%d", w, i))
				if _, _, err := s.Redeem(ctx, tok.ID, tok.TicketHash, now, nil); err != nil {
					t.Errorf("Redeem: %v", err)
				}
			}
		}()
	}
	stop := storetest.RaceRelays(t, 2, func() error {
		_, err := storetest.RelayOnce[*sql.Tx](ctx, s, 7, relayInto)
		return err
	})
	wg.Wait()
	want := 1 + 2*writers*each
	for deadline := time.Now().Add(10 * time.Second); len(relayed()) < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	got := relayed()
	if len(got) != want || got[0] != "sit_first" {
		t.Errorf("relayed %d events starting %v, want %d starting with sit_first", len(got), got[:min(len(got), 1)], want)
	}
	for _, id := range got {
		if id == "sit_gone" {
			t.Error("relayed the event of a transaction that rolled back")
		}
	}
}
