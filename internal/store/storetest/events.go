package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// wantEvent is an event as the tests expect it.
type wantEvent struct {
	typ, tokenID string
	status       tokens.Status
	errorCode    string
}

func (w wantEvent) String() string {
	return fmt.Sprintf("%s %s (%s) %s", w.typ, w.tokenID, w.status, w.errorCode)
}

func allEvents(t *testing.T, s tokens.Store, f tokens.EventFilter) []tokens.Event {
	t.Helper()
	f.Limit = tokens.MaxEventLimit
	list, more, err := s.ListEvents(context.Background(), f)
	if err != nil || more {
		t.Fatalf("ListEvents(%+v): %d, more %v, %v", f, len(list), more, err)
	}
	return list
}

func checkEvents(t *testing.T, what string, got []tokens.Event, want []wantEvent) {
	t.Helper()
	var g []string
	for _, e := range got {
		g = append(g, wantEvent{e.Type, e.Token.ID, e.Token.Status, e.ErrorCode}.String())
	}
	var w []string
	for _, e := range want {
		w = append(w, e.String())
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("%s: got events\n%s\nwant\n%s", what, strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

// testEvents: every change records its event, with the context it was made
// under and the token as it left it; a change that did not happen records
// none; pages, filters and retention.
func testEvents(t *testing.T, s tokens.Store) {
	ec := tokens.EventContext{Key: "key_ab12cd34", IP: "203.0.113.7", UserAgent: "test-agent/1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	ctx := tokens.WithEventContext(context.Background(), ec)
	a := token("sit_00000000000000000000000e1", "user_ev", now.Add(-3*time.Second))
	b := token("act_00000000000000000000000e2", "user_ev", now.Add(-2*time.Second))
	b.Actor, b.SessionMaxDuration = []byte(`{"sub":"user_support"}`), time.Minute
	c := token("sit_00000000000000000000000e3", "user_ev", now.Add(-time.Second))
	d := token("sit_00000000000000000000000e4", "user_ev2", now)
	d.Metadata = []byte(`{"plan":"pro"}`)

	mustCreate := func(cr tokens.Creation) {
		t.Helper()
		if _, err := s.Create(ctx, cr); err != nil {
			t.Fatalf("Create %s: %v", cr.Token.ID, err)
		}
	}
	mustCreate(tokens.Creation{Token: a})
	mustCreate(tokens.Creation{Token: b})
	dup := a
	dup.UserID, dup.TicketHash = "user_other", ticketHash("another")
	if err := createPlain(ctx, s, dup); err == nil {
		t.Fatalf("Create of a stored id succeeded")
	}
	mustCreate(tokens.Creation{Token: c, RevokePrevious: true}) // revokes a
	mustCreate(tokens.Creation{Token: d, Code: codeOf(d.ID, "123456")})
	if _, ch, err := s.Redeem(ctx, c.ID, ticketHash("someone else"), now, nil); err != nil || ch != tokens.Unchanged {
		t.Fatalf("Redeem with a wrong hash: %v, %v", ch, err)
	}
	if _, ch, err := s.Redeem(ctx, c.ID, c.TicketHash, now, nil); err != nil || ch != tokens.Changed {
		t.Fatalf("Redeem: %v, %v", ch, err)
	}
	if _, ch, err := s.Redeem(ctx, c.ID, c.TicketHash, now, nil); err != nil || ch != tokens.Unchanged {
		t.Fatalf("second Redeem: %v, %v", ch, err)
	}
	if err := s.AppendEvent(ctx, tokens.Event{Type: "sign_in_token.redeem_refused", CreatedAt: now,
		Token: tokens.Token{ID: c.ID}, ErrorCode: "sign_in_token_already_used"}); err != nil {
		t.Fatalf("AppendEvent: %v", err)
	}
	if _, ch, err := s.Revoke(ctx, b.ID, now, keyAt("key-ev", "revoke b", now)); err != nil || ch != tokens.Changed {
		t.Fatalf("Revoke with a key: %v, %v", ch, err)
	}
	if _, ch, err := s.Revoke(ctx, b.ID, now, keyAt("key-ev", "revoke b", now)); err != nil || ch != tokens.Replayed {
		t.Fatalf("Revoke replayed: %v, %v", ch, err)
	}
	if _, ch, err := s.Revoke(ctx, b.ID, now, nil); err != nil || ch != tokens.Unchanged {
		t.Fatalf("Revoke of a revoked token: %v, %v", ch, err)
	}
	if _, outcome, err := s.RedeemCode(ctx, guess("user_ev2", "000000", now, 3, nil)); err != nil || outcome != tokens.CodeWrong {
		t.Fatalf("RedeemCode wrong: %v, %v", outcome, err)
	}
	if _, outcome, err := s.RedeemCode(ctx, guess("user_ev2", "123456", now, 3, nil)); err != nil || outcome != tokens.CodeAccepted {
		t.Fatalf("RedeemCode: %v, %v", outcome, err)
	}
	if list, err := s.RevokeUser(ctx, tokens.KindSignIn, "user_ev2", now); err != nil || len(list) != 0 {
		t.Fatalf("RevokeUser with nothing pending: %v, %v", list, err)
	}
	// Keyed: a create and a redemption record once; their retries nothing.
	e := token("sit_00000000000000000000000e5", "user_ev3", now)
	retry := token("sit_00000000000000000000000e6", "user_ev3", now) // a retry draws a new id
	for i, tok := range []tokens.Token{e, retry} {
		got, created, err := createKeyed(ctx, s, tok, idem("key-ev-create", []byte("create e"), now.Add(-time.Hour)))
		if err != nil || got.ID != e.ID || created != (i == 0) {
			t.Fatalf("keyed Create #%d: %s, created %v, %v; want %s", i+1, got.ID, created, err, e.ID)
		}
	}
	for i, want := range []tokens.Change{tokens.Changed, tokens.Replayed} {
		if _, ch, err := s.Redeem(ctx, e.ID, e.TicketHash, now, keyAt("key-ev-redeem", "redeem e", now)); err != nil || ch != want {
			t.Fatalf("keyed Redeem #%d: %v, %v; want %v", i+1, ch, err, want)
		}
	}

	want := []wantEvent{
		{"sign_in_token.created", a.ID, tokens.StatusPending, ""},
		{"actor_token.created", b.ID, tokens.StatusPending, ""},
		{"sign_in_token.revoked", a.ID, tokens.StatusRevoked, ""},
		{"sign_in_token.created", c.ID, tokens.StatusPending, ""},
		{"sign_in_token.created", d.ID, tokens.StatusPending, ""},
		{"sign_in_token.accepted", c.ID, tokens.StatusAccepted, ""},
		{"sign_in_token.redeem_refused", c.ID, tokens.StatusAccepted, "sign_in_token_already_used"},
		{"actor_token.revoked", b.ID, tokens.StatusRevoked, ""},
		{"sign_in_token.code_failed", d.ID, tokens.StatusPending, ""},
		{"sign_in_token.accepted", d.ID, tokens.StatusAccepted, ""},
		{"sign_in_token.created", e.ID, tokens.StatusPending, ""},
		{"sign_in_token.accepted", e.ID, tokens.StatusAccepted, ""},
	}
	waitEvents(t, s, len(want))
	all := allEvents(t, s, tokens.EventFilter{})
	checkEvents(t, "all events", all, want)
	for i, e := range all {
		if e.Context != ec {
			t.Errorf("event %d context: got %+v, want %+v", i, e.Context, ec)
		}
		if e.Token.TicketHash != nil {
			t.Errorf("event %d keeps the ticket hash", i)
		}
		if _, _, ok := tokens.ParseEventID(e.ID); !ok {
			t.Errorf("event %d id %q does not parse", i, e.ID)
		}
		if i > 0 && e.ID <= all[i-1].ID {
			t.Errorf("event %d id %s does not sort after %s", i, e.ID, all[i-1].ID)
		}
	}
	if len(all) == len(want) {
		assertToken(t, "created event's token", withHash(all[0].Token, a.TicketHash), a)
		assertToken(t, "accepted event's token", withHash(all[5].Token, c.TicketHash), accepted(c, now))
		if !all[5].CreatedAt.Equal(now) {
			t.Errorf("accepted event at %v, want %v", all[5].CreatedAt, now)
		}
		if !sameJSON(all[1].Token.Actor, b.Actor) || all[1].Token.SessionMaxDuration != time.Minute {
			t.Errorf("actor token's event: actor %s for %v", all[1].Token.Actor, all[1].Token.SessionMaxDuration)
		}
		if !sameJSON(all[4].Token.Metadata, d.Metadata) {
			t.Errorf("event's metadata: got %s, want %s", all[4].Token.Metadata, d.Metadata)
		}
	}

	// Pages of two, after the last id of each.
	var paged []tokens.Event
	after := ""
	for pages := 0; ; pages++ {
		page, more, err := s.ListEvents(context.Background(), tokens.EventFilter{After: after, Limit: 3})
		if err != nil || pages > len(want) {
			t.Fatalf("ListEvents page %d: %v", pages, err)
		}
		paged = append(paged, page...)
		if wantMore := len(paged) < len(want); more != wantMore {
			t.Errorf("page %d: has_more %v, want %v", pages, more, wantMore)
		}
		if !more {
			break
		}
		after = page[len(page)-1].ID
	}
	checkEvents(t, "paged events", paged, want)

	checkEvents(t, "type filter", allEvents(t, s, tokens.EventFilter{Type: "sign_in_token.created"}), []wantEvent{want[0], want[3], want[4], want[10]})
	checkEvents(t, "user filter", allEvents(t, s, tokens.EventFilter{UserID: "user_ev2"}), []wantEvent{want[4], want[8], want[9]})
	checkEvents(t, "both filters", allEvents(t, s, tokens.EventFilter{UserID: "user_ev", Type: "actor_token.revoked"}), []wantEvent{want[7]})
	if len(all) > 0 {
		checkEvents(t, "after the last", allEvents(t, s, tokens.EventFilter{After: all[len(all)-1].ID}), nil)
	}

	// Retention: events before the cutoff go, in batches of the limit.
	if n, err := s.DeleteEvents(context.Background(), now, 100); err != nil || n != 4 {
		t.Errorf("DeleteEvents before the last events: %d, %v; want 4", n, err)
	}
	for i, wantN := range []int{4, 4, 0} {
		if n, err := s.DeleteEvents(context.Background(), now.Add(time.Second), 4); err != nil || n != wantN {
			t.Errorf("DeleteEvents #%d: %d, %v; want %d", i+1, n, err, wantN)
		}
	}
	checkEvents(t, "after retention", allEvents(t, s, tokens.EventFilter{}), nil)
}

// waitEvents waits until the log shows n events. A store may hold events
// back while an older transaction is still open (PostgreSQL does, for any
// transaction on the server), which tests running in parallel cause.
func waitEvents(t *testing.T, s tokens.Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		list, _, err := s.ListEvents(context.Background(), tokens.EventFilter{Limit: tokens.MaxEventLimit})
		if err != nil {
			t.Fatalf("ListEvents: %v", err)
		}
		if len(list) >= n || time.Now().After(deadline) {
			return
		}
	}
}

func withHash(t tokens.Token, hash []byte) tokens.Token {
	t.TicketHash = hash
	return t
}
