package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestGroupedEvents: a group of creates and redemptions records the event
// of each, in the group's transaction, with each write's own context.
func TestGroupedEvents(t *testing.T) {
	t.Parallel()
	s, hold := groupSetup(t)
	ctxOf := func(id string) context.Context {
		return tokens.WithEventContext(context.Background(), tokens.EventContext{Key: "key_" + id, IP: "ip " + id, UserAgent: "ua " + id, TraceID: "trace " + id})
	}
	var toRedeem []tokens.Token
	for i := range 4 {
		tok := pending(fmt.Sprintf("sit_evredeem_%d", i))
		if err := createPlain(ctxOf(tok.ID), s, tok); err != nil {
			t.Fatal(err)
		}
		toRedeem = append(toRedeem, tok)
	}
	var fns []func()
	for i, tok := range toRedeem {
		hash := tok.TicketHash
		if i == 0 {
			hash = tokens.HashTicket("forged") // refused: no event
		}
		fns = append(fns, func() { s.Redeem(ctxOf(tok.ID), tok.ID, hash, groupNow, nil) })
	}
	for i := range 4 {
		tok := pending(fmt.Sprintf("sit_evnew_%d", i))
		fns = append(fns, func() {
			if err := createPlain(ctxOf(tok.ID), s, tok); err != nil {
				t.Errorf("Create %s: %v", tok.ID, err)
			}
		})
	}
	before := s.WriteStats()
	queued(t, s, hold, fns...)
	if got := s.WriteStats().Groups - before.Groups; got < 1 {
		t.Fatalf("groups sent: %d, want at least 1", got)
	}

	want := map[string]int{}
	for i, tok := range toRedeem {
		want["sign_in_token.created "+tok.ID] = 1
		if i > 0 {
			want["sign_in_token.accepted "+tok.ID] = 1
		}
	}
	for i := range 4 {
		want[fmt.Sprintf("sign_in_token.created sit_evnew_%d", i)] = 1
	}
	// Events show once every older transaction on the server has ended:
	// other tests' transactions can hold them back for a moment.
	var count map[string]int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		list, _, err := s.ListEvents(context.Background(), tokens.EventFilter{Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		count = map[string]int{}
		for _, e := range list {
			if strings.HasPrefix(e.Token.ID, "sit_blocker") {
				continue // the writer's blocker
			}
			count[e.Type+" "+e.Token.ID]++
			if want := tokens.EventContextFrom(ctxOf(e.Token.ID)); e.Context != want {
				t.Errorf("%s of %s: context %+v, want %+v", e.Type, e.Token.ID, e.Context, want)
			}
		}
		if len(count) >= len(want) {
			break
		}
	}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("events:\n got %v\nwant %v", count, want)
	}
}

// TestEventsTailStable holds a transaction that has inserted an event open
// while later events commit, and tails the log with after meanwhile: the
// consumer must see every event exactly once, in id order, never one with
// an id smaller than its cursor, although the held event's id is the
// smallest.
func TestEventsTailStable(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	s := open(t, dbURL)
	ctx := context.Background()
	create := func(id string) {
		t.Helper()
		if err := createPlain(ctx, s, pending(id)); err != nil {
			t.Fatal(err)
		}
	}
	create("sit_before")

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	held, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx)
	if _, err := held.Exec(ctx, `INSERT INTO events (type, token_id, user_id, created_at, token)
		VALUES ('sign_in_token.created', 'sit_held', 'user_held', now(), jsonb_build_object('id', 'sit_held',
			'user_id', 'user_held', 'status', 'pending', 'created_at', now(), 'updated_at', now(), 'expires_at', now()))`); err != nil {
		t.Fatal(err)
	}

	seen := map[string]int{}
	var order []string
	cursor := ""
	tail := func() {
		t.Helper()
		for {
			page, more, err := s.ListEvents(ctx, tokens.EventFilter{After: cursor, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if e.ID <= cursor {
					t.Errorf("event %s (%s) at or before the cursor %s", e.ID, e.Token.ID, cursor)
				}
				cursor = e.ID
				seen[e.Token.ID]++
				order = append(order, e.Token.ID)
			}
			if !more {
				return
			}
		}
	}
	waitFor(t, "the first event", func() bool { tail(); return seen["sit_before"] == 1 })
	for i := range 5 {
		create(fmt.Sprintf("sit_after_%d", i))
		tail()
	}
	for i := range 5 {
		if n := seen[fmt.Sprintf("sit_after_%d", i)]; n != 0 {
			t.Fatalf("sit_after_%d shown while an older transaction's event was uncommitted", i)
		}
	}
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every event", func() bool { tail(); return len(order) == 7 })
	tail()
	want := []string{"sit_before", "sit_held", "sit_after_0", "sit_after_1", "sit_after_2", "sit_after_3", "sit_after_4"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("tailed events: got %v, want %v", order, want)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", id, n)
		}
	}
}

// TestEventsTailConcurrent tails the log while writers create and redeem
// through the grouped writers at once: the consumer sees every event
// exactly once, in id order.
func TestEventsTailConcurrent(t *testing.T) {
	t.Parallel()
	s := openWith(t, pgtest.URL(t), postgres.Options{Writers: 2})
	ctx := context.Background()
	const writers, each = 8, 40
	wait := createAndRedeem(t, s, writers, each, "sit_tail")
	seen := map[string]int{}
	cursor := ""
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < 2*writers*each && time.Now().Before(deadline) {
		page, _, err := s.ListEvents(ctx, tokens.EventFilter{After: cursor, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if e.ID <= cursor {
				t.Fatalf("event %s at or before the cursor %s", e.ID, cursor)
			}
			cursor = e.ID
			seen[e.Type+" "+e.Token.ID]++
		}
	}
	wait()
	if len(seen) != 2*writers*each {
		t.Errorf("events seen: %d, want %d", len(seen), 2*writers*each)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s seen %d times", k, n)
		}
	}
}

// createAndRedeem starts writers goroutines that each create and then redeem
// each tokens, prefix_w_i, through s, and returns a wait for them.
func createAndRedeem(t *testing.T, s *postgres.Store, writers, each int, prefix string) (wait func()) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				tok := pending(fmt.Sprintf("%s_%d_%d", prefix, w, i))
				if err := createPlain(ctx, s, tok); err != nil {
					t.Errorf("Create: %v", err)
					return
				}
				if _, _, err := s.Redeem(ctx, tok.ID, tok.TicketHash, groupNow, nil); err != nil {
					t.Errorf("Redeem: %v", err)
					return
				}
			}
		}()
	}
	return wg.Wait
}
