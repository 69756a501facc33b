// Package storetest is the contract every tokens.Store keeps, as one test
// suite each store runs against a real database.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// now is the fixed clock of every test, at millisecond precision plus a
// little, so a store that drops milliseconds is caught.
var now = time.Date(2025, 11, 28, 8, 0, 0, 123_000_000, time.UTC)

// Run runs the contract against the store open returns. open must return a
// migrated, empty store of its own for each call and close it when t ends;
// it is called from parallel subtests.
func Run(t *testing.T, open func(t *testing.T) tokens.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tokens.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateDuplicateID", testCreateDuplicateID},
		{"UnknownID", testUnknownID},
		{"Transitions", testTransitions},
		{"List", testList},
		{"CreateIdempotent", testCreateIdempotent},
		{"DeleteFinished", testDeleteFinished},
		{"DeleteFinishedLimit", testDeleteFinishedLimit},
		{"ConcurrentRedeem", testConcurrentRedeem},
		{"RevokeRacesRedeem", testRevokeRacesRedeem},
		{"ConcurrentCreateIdempotent", testConcurrentCreateIdempotent},
		{"ConcurrentDeleteFinished", testConcurrentDeleteFinished},
		{"Ping", testPing},
		{"IdempotentChange", testIdempotentChange},
		{"ConcurrentKeyedRedeem", testConcurrentKeyedRedeem},
		{"ContextEnded", testContextEnded},
		{"RedeemCode", testRedeemCode},
		{"ConcurrentWrongCodes", testConcurrentWrongCodes},
		{"KeyedCode", testKeyedCode},
		{"RevokeUser", testRevokeUser},
		{"RevokePrevious", testRevokePrevious},
		{"RevokeUserRacesRedeem", testRevokeUserRacesRedeem},
		{"ActorTokens", testActorTokens},
		{"RedirectAndMetadata", testRedirectAndMetadata},
		{"Events", testEvents},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// token returns a pending token created at created and expiring an hour
// later, with a ticket hash derived from its id.
func token(id, userID string, created time.Time) tokens.Token {
	return tokens.Token{ID: id, UserID: userID, Status: tokens.StatusPending,
		TicketHash: ticketHash(id), CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(time.Hour)}
}

func ticketHash(id string) []byte { return tokens.HashTicket("ticket for " + id) }

// accepted and revoked return tok finished at the given time.
func accepted(tok tokens.Token, at time.Time) tokens.Token {
	tok.Status, tok.UpdatedAt, tok.AcceptedAt = tokens.StatusAccepted, at, &at
	return tok
}

func revoked(tok tokens.Token, at time.Time) tokens.Token {
	tok.Status, tok.UpdatedAt, tok.RevokedAt = tokens.StatusRevoked, at, &at
	return tok
}

func create(t *testing.T, s tokens.Store, toks ...tokens.Token) {
	t.Helper()
	for _, tok := range toks {
		if err := createPlain(context.Background(), s, tok); err != nil {
			t.Fatalf("Create(%s): %v", tok.ID, err)
		}
	}
}

func get(t *testing.T, s tokens.Store, id string) tokens.Token {
	t.Helper()
	tok, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return tok
}

// sameToken compares every field, timestamps by instant.
func sameToken(a, b tokens.Token) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.OrgID == b.OrgID && a.Status == b.Status &&
		string(a.TicketHash) == string(b.TicketHash) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		sameTime(a.AcceptedAt, b.AcceptedAt) && sameTime(a.RevokedAt, b.RevokedAt)
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// show prints a token with its optional timestamps dereferenced.
func show(tok tokens.Token) string {
	opt := func(p *time.Time) string {
		if p == nil {
			return "nil"
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("{id=%s user=%s org=%q status=%s hash=%x created=%s updated=%s expires=%s accepted=%s revoked=%s}",
		tok.ID, tok.UserID, tok.OrgID, tok.Status, tok.TicketHash,
		tok.CreatedAt.UTC().Format(time.RFC3339Nano), tok.UpdatedAt.UTC().Format(time.RFC3339Nano),
		tok.ExpiresAt.UTC().Format(time.RFC3339Nano), opt(tok.AcceptedAt), opt(tok.RevokedAt))
}

func assertToken(t *testing.T, what string, got, want tokens.Token) {
	t.Helper()
	if !sameToken(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, show(got), show(want))
	}
}

func testCreateGet(t *testing.T, s tokens.Store) {
	withOrg := token("sit_org", "user_1", now)
	withOrg.OrgID = "org_1"
	odd := token("sit_odd_ms", "user_1", now.Add(-999*time.Millisecond))
	odd.ExpiresAt = now.Add(30*24*time.Hour + 7*time.Millisecond)

	tests := []struct {
		name string
		tok  tokens.Token
	}{
		{"pending without org", token("sit_plain", "user_1", now)},
		{"pending with org", withOrg},
		{"odd milliseconds", odd},
		{"accepted", accepted(token("sit_accepted", "user_2", now.Add(-time.Minute)), now.Add(-time.Second))},
		{"revoked", revoked(token("sit_revoked", "user_2", now.Add(-time.Minute)), now.Add(-2*time.Millisecond))},
		{"unicode ids", token("sit_unicode", "üser ✓", now)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			create(t, s, tt.tok)
			got := get(t, s, tt.tok.ID)
			assertToken(t, "Get after Create", got, tt.tok)
			if got.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt location: got %v, want UTC", got.CreatedAt.Location())
			}
		})
	}
}

func testCreateDuplicateID(t *testing.T, s tokens.Store) {
	first := token("sit_dup", "user_1", now)
	create(t, s, first)
	second := token("sit_dup", "user_2", now.Add(time.Second))
	if err := createPlain(context.Background(), s, second); err == nil {
		t.Fatalf("second Create with id %s: got nil error, want an error", second.ID)
	}
	assertToken(t, "first token after duplicate Create", get(t, s, first.ID), first)
}

func testUnknownID(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	create(t, s, token("sit_known", "user_1", now))
	tests := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "sit_unknown"); return err }},
		{"Revoke", func() error { _, _, err := s.Revoke(ctx, "sit_unknown", now, nil); return err }},
		{"Redeem", func() error {
			_, _, err := s.Redeem(ctx, "sit_unknown", ticketHash("sit_unknown"), now, nil)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tokens.ErrNotFound) {
				t.Errorf("got %v, want %v", err, tokens.ErrNotFound)
			}
		})
	}
}

func testTransitions(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	created := now.Add(-10 * time.Minute)
	earlier := now.Add(-5 * time.Minute)
	type action int
	const (
		redeem action = iota
		revoke
	)
	tests := []struct {
		name      string
		stored    tokens.Token // before the call; its id is made unique per case
		action    action
		wrongHash bool
		at        time.Time
		wantOK    bool
		want      func(tokens.Token) tokens.Token // the token after the call
	}{
		{name: "redeem pending", stored: token("", "u", created), action: redeem, at: now, wantOK: true,
			want: func(tok tokens.Token) tokens.Token { return accepted(tok, now) }},
		{name: "revoke pending", stored: token("", "u", created), action: revoke, at: now, wantOK: true,
			want: func(tok tokens.Token) tokens.Token { return revoked(tok, now) }},
		{name: "redeem accepted", stored: accepted(token("", "u", created), earlier), action: redeem, at: now},
		{name: "revoke accepted", stored: accepted(token("", "u", created), earlier), action: revoke, at: now},
		{name: "redeem revoked", stored: revoked(token("", "u", created), earlier), action: redeem, at: now},
		{name: "revoke revoked", stored: revoked(token("", "u", created), earlier), action: revoke, at: now},
		{name: "redeem with wrong hash", stored: token("", "u", created), action: redeem, wrongHash: true, at: now},
		{name: "redeem 1ms before expiry", stored: token("", "u", created), action: redeem,
			at: created.Add(time.Hour - time.Millisecond), wantOK: true,
			want: func(tok tokens.Token) tokens.Token { return accepted(tok, created.Add(time.Hour-time.Millisecond)) }},
		{name: "redeem at expiry", stored: token("", "u", created), action: redeem, at: created.Add(time.Hour)},
		{name: "redeem after expiry", stored: token("", "u", created), action: redeem, at: created.Add(2 * time.Hour)},
		{name: "revoke expired pending", stored: token("", "u", created), action: revoke,
			at: created.Add(2 * time.Hour), wantOK: true,
			want: func(tok tokens.Token) tokens.Token { return revoked(tok, created.Add(2*time.Hour)) }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stored := tt.stored
			stored.ID = fmt.Sprintf("sit_transition_%02d", i)
			stored.TicketHash = ticketHash(stored.ID)
			create(t, s, stored)
			want := stored // a call that changes nothing returns the token as stored
			if tt.want != nil {
				want = tt.want(stored)
			}

			var got tokens.Token
			var change tokens.Change
			var err error
			switch tt.action {
			case redeem:
				hash := stored.TicketHash
				if tt.wrongHash {
					hash = ticketHash("another ticket")
				}
				got, change, err = s.Redeem(ctx, stored.ID, hash, tt.at, nil)
			case revoke:
				got, change, err = s.Revoke(ctx, stored.ID, tt.at, nil)
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if ok := change == tokens.Changed; ok != tt.wantOK {
				t.Errorf("changed: got %v (%d), want %v", ok, change, tt.wantOK)
			}
			assertToken(t, "returned token", got, want)
			assertToken(t, "stored token", get(t, s, stored.ID), want)
		})
	}
}

func testList(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	// Ties in created_at (03/04 and 05/06) are ordered by id, highest first.
	create(t, s,
		token("sit_01", "user_1", now.Add(-5*time.Minute)),
		accepted(token("sit_02", "user_1", now.Add(-4*time.Minute)), now),
		token("sit_03", "user_2", now.Add(-3*time.Minute)),
		revoked(token("sit_04", "user_1", now.Add(-3*time.Minute)), now),
		accepted(token("sit_05", "user_2", now.Add(-time.Minute)), now),
		token("sit_06", "user_1", now.Add(-time.Minute)),
	)
	tests := []struct {
		name      string
		filter    tokens.ListFilter
		wantIDs   []string
		wantTotal int
	}{
		{"all", tokens.ListFilter{Limit: 10}, []string{"sit_06", "sit_05", "sit_04", "sit_03", "sit_02", "sit_01"}, 6},
		{"by user", tokens.ListFilter{UserID: "user_1", Limit: 10}, []string{"sit_06", "sit_04", "sit_02", "sit_01"}, 4},
		{"by status", tokens.ListFilter{Status: tokens.StatusPending, Limit: 10}, []string{"sit_06", "sit_03", "sit_01"}, 3},
		{"by user and status", tokens.ListFilter{UserID: "user_1", Status: tokens.StatusPending, Limit: 10}, []string{"sit_06", "sit_01"}, 2},
		{"by user and status, one match", tokens.ListFilter{UserID: "user_2", Status: tokens.StatusAccepted, Limit: 10}, []string{"sit_05"}, 1},
		{"unknown user", tokens.ListFilter{UserID: "nobody", Limit: 10}, nil, 0},
		{"first page", tokens.ListFilter{Limit: 2}, []string{"sit_06", "sit_05"}, 6},
		{"second page", tokens.ListFilter{Limit: 2, Offset: 2}, []string{"sit_04", "sit_03"}, 6},
		{"last page, short", tokens.ListFilter{Limit: 4, Offset: 4}, []string{"sit_02", "sit_01"}, 6},
		{"past the end", tokens.ListFilter{Limit: 10, Offset: 10}, nil, 6},
		{"filtered page", tokens.ListFilter{UserID: "user_1", Limit: 1, Offset: 1}, []string{"sit_04"}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, total, err := s.List(ctx, tt.filter)
			if err != nil {
				t.Fatalf("List(%+v): %v", tt.filter, err)
			}
			var ids []string
			for _, tok := range list {
				ids = append(ids, tok.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("ids: got %v, want %v", ids, tt.wantIDs)
			}
			if total != tt.wantTotal {
				t.Errorf("total: got %d, want %d", total, tt.wantTotal)
			}
		})
	}
	t.Run("rows are whole", func(t *testing.T) {
		list, _, err := s.List(ctx, tokens.ListFilter{Status: tokens.StatusRevoked, Limit: 10})
		if err != nil || len(list) != 1 {
			t.Fatalf("List revoked: got %d tokens, err %v; want 1, nil", len(list), err)
		}
		assertToken(t, "listed token", list[0], get(t, s, "sit_04"))
	})
}

func testCreateIdempotent(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	notBefore := now.Add(-tokens.IdempotencyWindow)
	hashA, hashB := []byte("request A"), []byte("request B")

	first := token("sit_idem_1", "user_1", now)
	got, created, err := createKeyed(ctx, s, first, idem("key-1", hashA, notBefore))
	if err != nil || !created {
		t.Fatalf("first use: got created=%v err=%v, want true, nil", created, err)
	}
	assertToken(t, "first use returns", got, first)
	assertToken(t, "first use stores", get(t, s, first.ID), first)

	t.Run("retry with the same request", func(t *testing.T) {
		retry := token("sit_idem_retry", "user_1", now.Add(time.Second))
		got, created, err := createKeyed(ctx, s, retry, idem("key-1", hashA, notBefore))
		if err != nil || created {
			t.Fatalf("got created=%v err=%v, want false, nil", created, err)
		}
		assertToken(t, "retry returns the first token", got, first)
		if _, err := s.Get(ctx, retry.ID); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("Get(retry's token): got %v, want %v", err, tokens.ErrNotFound)
		}
	})
	t.Run("retry with another request", func(t *testing.T) {
		other := token("sit_idem_other", "user_2", now.Add(time.Second))
		_, _, err := createKeyed(ctx, s, other, idem("key-1", hashB, notBefore))
		if !errors.Is(err, tokens.ErrIdempotencyMismatch) {
			t.Fatalf("got %v, want %v", err, tokens.ErrIdempotencyMismatch)
		}
		if _, err := s.Get(ctx, other.ID); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("Get(other's token): got %v, want %v", err, tokens.ErrNotFound)
		}
	})
	t.Run("another key", func(t *testing.T) {
		tok := token("sit_idem_2", "user_1", now)
		_, created, err := createKeyed(ctx, s, tok, idem("key-2", hashA, notBefore))
		if err != nil || !created {
			t.Fatalf("got created=%v err=%v, want true, nil", created, err)
		}
	})
	t.Run("retry returns the token as it is now", func(t *testing.T) {
		tok := token("sit_idem_3", "user_1", now)
		if _, _, err := createKeyed(ctx, s, tok, idem("key-3", hashA, notBefore)); err != nil {
			t.Fatal(err)
		}
		if _, change, err := s.Redeem(ctx, tok.ID, tok.TicketHash, now, nil); err != nil || change != tokens.Changed {
			t.Fatalf("Redeem: got %v, %v; want Changed, nil", change, err)
		}
		got, created, err := createKeyed(ctx, s, token("sit_idem_3b", "user_1", now), idem("key-3", hashA, notBefore))
		if err != nil || created {
			t.Fatalf("got created=%v err=%v, want false, nil", created, err)
		}
		assertToken(t, "retry returns", got, accepted(tok, now))
	})
	t.Run("key older than notBefore is unused", func(t *testing.T) {
		old := token("sit_idem_old", "user_1", now.Add(-25*time.Hour))
		if _, created, err := createKeyed(ctx, s, old, idem("key-old", hashA, now.Add(-72*time.Hour))); err != nil || !created {
			t.Fatalf("first use: got created=%v err=%v, want true, nil", created, err)
		}
		fresh := token("sit_idem_fresh", "user_1", now)
		got, created, err := createKeyed(ctx, s, fresh, idem("key-old", hashB, notBefore))
		if err != nil || !created {
			t.Fatalf("use after the window: got created=%v err=%v, want true, nil", created, err)
		}
		assertToken(t, "returns", got, fresh)
		assertToken(t, "old token is kept", get(t, s, old.ID), old)
		// The key now belongs to the fresh token and its request.
		got, created, err = createKeyed(ctx, s, token("sit_idem_fresh2", "user_1", now), idem("key-old", hashB, notBefore))
		if err != nil || created {
			t.Fatalf("retry: got created=%v err=%v, want false, nil", created, err)
		}
		assertToken(t, "retry returns", got, fresh)
	})
}

func testDeleteFinished(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	cutoff := now.Add(-time.Hour)
	keysCutoff := now.Add(-24 * time.Hour)
	old := now.Add(-48 * time.Hour)
	expiring := func(id string, expires time.Time) tokens.Token {
		tok := token(id, "user_1", old)
		tok.ExpiresAt = expires
		return tok
	}
	// Retention goes by expiry alone, finished or not: a token finished
	// long ago stays until it expired before the cutoff.
	keep := []tokens.Token{
		expiring("sit_keep_pending", now.Add(time.Hour)),
		expiring("sit_keep_expired_after_cutoff", now.Add(-30*time.Minute)),
		expiring("sit_keep_expires_at_cutoff", cutoff),
		accepted(expiring("sit_keep_accepted_recently", now.Add(time.Hour)), now.Add(-30*time.Minute)),
		revoked(expiring("sit_keep_revoked_recently", now.Add(time.Hour)), now.Add(-30*time.Minute)),
		accepted(expiring("sit_keep_accepted_unexpired", now.Add(time.Hour)), cutoff.Add(-time.Minute)),
		revoked(expiring("sit_keep_revoked_expired_after_cutoff", now.Add(-30*time.Minute)), old),
	}
	drop := []tokens.Token{
		expiring("sit_drop_expired", cutoff.Add(-time.Millisecond)),
		revoked(expiring("sit_drop_revoked_expired", cutoff.Add(-time.Minute)), old),
		accepted(expiring("sit_drop_accepted_expired", now.Add(-2*time.Hour)), old),
	}
	create(t, s, keep...)
	create(t, s, drop...)

	// Keys: one recent, one old (its token stays), one whose token goes.
	recentKey := token("sit_key_recent", "user_1", now.Add(-time.Hour))
	oldKey := token("sit_key_old", "user_1", now.Add(-30*time.Hour))
	oldKey.ExpiresAt = now.Add(time.Hour)
	droppedKey := token("sit_key_dropped", "user_1", now.Add(-3*time.Hour)) // expires 2h ago
	for key, tok := range map[string]tokens.Token{"recent": recentKey, "old": oldKey, "dropped": droppedKey} {
		if _, created, err := createKeyed(ctx, s, tok, idem(key, []byte("first"), now.Add(-100*time.Hour))); err != nil || !created {
			t.Fatalf("CreateIdempotent(%s): got created=%v err=%v, want true, nil", key, created, err)
		}
	}
	keep = append(keep, recentKey, oldKey)
	drop = append(drop, droppedKey)

	n, err := s.DeleteFinished(ctx, cutoff, 100)
	if err != nil {
		t.Fatalf("DeleteFinished: %v", err)
	}
	if n != len(drop) {
		t.Errorf("deleted: got %d, want %d", n, len(drop))
	}
	// Keys go in batches of their own: "old" alone is older than the cutoff
	// ("dropped" went with its token).
	for i, want := range []int{1, 0} {
		if n, err := s.DeleteIdempotencyKeys(ctx, keysCutoff, 1); err != nil || n != want {
			t.Errorf("DeleteIdempotencyKeys #%d: got %d, %v; want %d, nil", i+1, n, err, want)
		}
	}
	for _, tok := range keep {
		if _, err := s.Get(ctx, tok.ID); err != nil {
			t.Errorf("Get(%s) after DeleteFinished: got %v, want nil", tok.ID, err)
		}
	}
	for _, tok := range drop {
		if _, err := s.Get(ctx, tok.ID); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("Get(%s) after DeleteFinished: got %v, want %v", tok.ID, err, tokens.ErrNotFound)
		}
	}

	// A key still there refuses another request; a pruned one takes it.
	keyTests := []struct {
		key         string
		wantCreated bool
		wantErr     error
	}{
		{"recent", false, tokens.ErrIdempotencyMismatch},
		{"old", true, nil},
		{"dropped", true, nil},
	}
	for _, tt := range keyTests {
		t.Run("key "+tt.key, func(t *testing.T) {
			tok := token("sit_key_reuse_"+tt.key, "user_1", now)
			_, created, err := createKeyed(ctx, s, tok, idem(tt.key, []byte("second"), now.Add(-100*time.Hour)))
			if !errors.Is(err, tt.wantErr) || created != tt.wantCreated {
				t.Errorf("got created=%v err=%v, want %v, %v", created, err, tt.wantCreated, tt.wantErr)
			}
		})
	}
}

func testDeleteFinishedLimit(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	for i := range 5 {
		tok := token(fmt.Sprintf("sit_limit_%d", i), "user_1", now.Add(-48*time.Hour))
		create(t, s, tok) // expired 47 hours ago
	}
	create(t, s, token("sit_limit_live", "user_1", now))
	for i, want := range []int{2, 2, 1, 0} {
		got, err := s.DeleteFinished(ctx, now, 2)
		if err != nil {
			t.Fatalf("DeleteFinished #%d: %v", i+1, err)
		}
		if got != want {
			t.Errorf("DeleteFinished #%d deleted: got %d, want %d", i+1, got, want)
		}
	}
	if _, err := s.Get(ctx, "sit_limit_live"); err != nil {
		t.Errorf("Get(sit_limit_live): got %v, want nil", err)
	}
}

// race runs fn in n goroutines released together.
func race(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

func testConcurrentRedeem(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	tok := token("sit_contested", "user_1", now.Add(-time.Minute))
	create(t, s, tok)
	const n = 32
	changes := make([]tokens.Change, n)
	errs := make([]error, n)
	race(n, func(i int) {
		_, changes[i], errs[i] = s.Redeem(ctx, tok.ID, tok.TicketHash, now.Add(time.Duration(i)*time.Millisecond), nil)
	})
	wins := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Redeem #%d: %v", i, errs[i])
		}
		if changes[i] == tokens.Changed {
			wins++
		}
	}
	if wins != 1 {
		t.Errorf("successful redemptions: got %d, want 1", wins)
	}
	if got := get(t, s, tok.ID); got.Status != tokens.StatusAccepted {
		t.Errorf("status: got %v, want %v", got.Status, tokens.StatusAccepted)
	}
}

func testRevokeRacesRedeem(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	for i := range 20 {
		tok := token(fmt.Sprintf("sit_race_%02d", i), "user_1", now.Add(-time.Minute))
		create(t, s, tok)
		var redeemed, revokedOK tokens.Change
		var redeemErr, revokeErr error
		race(2, func(j int) {
			if j == 0 {
				_, redeemed, redeemErr = s.Redeem(ctx, tok.ID, tok.TicketHash, now, nil)
			} else {
				_, revokedOK, revokeErr = s.Revoke(ctx, tok.ID, now, nil)
			}
		})
		if redeemErr != nil || revokeErr != nil {
			t.Fatalf("%s: Redeem err %v, Revoke err %v; want nil, nil", tok.ID, redeemErr, revokeErr)
		}
		if (redeemed == tokens.Changed) == (revokedOK == tokens.Changed) {
			t.Errorf("%s: redeem %v, revoke %v; want exactly one Changed", tok.ID, redeemed, revokedOK)
		}
		want := tokens.StatusAccepted
		if revokedOK == tokens.Changed {
			want = tokens.StatusRevoked
		}
		if got := get(t, s, tok.ID).Status; got != want {
			t.Errorf("%s: status got %v, want %v", tok.ID, got, want)
		}
	}
}

func testConcurrentCreateIdempotent(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	const n = 8
	ids := make([]string, n)
	created := make([]bool, n)
	errs := make([]error, n)
	race(n, func(i int) {
		tok := token(fmt.Sprintf("sit_first_use_%d", i), "user_1", now)
		var got tokens.Token
		got, created[i], errs[i] = createKeyed(ctx, s, tok, idem("shared-key", []byte("same request"), now.Add(-time.Hour)))
		ids[i] = got.ID
	})
	wins := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("CreateIdempotent #%d: %v", i, errs[i])
		}
		if created[i] {
			wins++
		}
		if ids[i] != ids[0] {
			t.Errorf("token id #%d: got %s, want %s (the same for every call)", i, ids[i], ids[0])
		}
	}
	if wins != 1 {
		t.Errorf("calls that created: got %d, want 1", wins)
	}
	_, total, err := s.List(ctx, tokens.ListFilter{Limit: 100})
	if err != nil || total != 1 {
		t.Errorf("tokens stored: got %d (err %v), want 1", total, err)
	}
}

func testConcurrentDeleteFinished(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	const tokenCount = 40
	for i := range tokenCount {
		create(t, s, token(fmt.Sprintf("sit_sweep_%02d", i), "user_1", now.Add(-48*time.Hour)))
	}
	const workers = 4
	deleted := make([]int, workers)
	errs := make([]error, workers)
	race(workers, func(i int) {
		for {
			n, err := s.DeleteFinished(ctx, now, 3)
			if err != nil || n == 0 {
				errs[i] = err
				return
			}
			deleted[i] += n
		}
	})
	total := 0
	for i := range workers {
		if errs[i] != nil {
			t.Errorf("worker %d: %v", i, errs[i])
		}
		total += deleted[i]
	}
	// A worker stops when it finds nothing unlocked, which can happen while
	// the others still hold the last rows: sweep until nothing is left.
	for {
		n, err := s.DeleteFinished(ctx, now, 100)
		if err != nil {
			t.Fatalf("final sweep: %v", err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total != tokenCount {
		t.Errorf("deleted in all: got %d, want %d", total, tokenCount)
	}
}

func testPing(t *testing.T, s tokens.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: got %v, want nil", err)
	}
}

// idem is an idempotency key record.
func idem(key string, requestHash []byte, notBefore time.Time) tokens.Idempotency {
	return tokens.Idempotency{Key: key, RequestHash: requestHash, NotBefore: notBefore}
}

// createPlain creates t with nothing else, as most creates are.
func createPlain(ctx context.Context, s tokens.Store, t tokens.Token) error {
	_, err := s.Create(ctx, tokens.Creation{Token: t})
	return err
}

// createKeyed creates t under key: the token created (or created first
// under the key) and whether this call created it.
func createKeyed(ctx context.Context, s tokens.Store, t tokens.Token, key tokens.Idempotency) (tokens.Token, bool, error) {
	res, err := s.Create(ctx, tokens.Creation{Token: t, Key: &key})
	return res.Token, res.Created, err
}

// testRedirectAndMetadata: a token's redirect_url and metadata are kept and
// read back by every method that returns a token, alone and in groups (many
// creates and redemptions at once); a token without them reads back without.
func testRedirectAndMetadata(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	const n = 16
	toks := make([]tokens.Token, n)
	var wg sync.WaitGroup
	for i := range toks {
		toks[i] = token(fmt.Sprintf("sit_meta_%02d", i), "user_meta", now)
		if i%4 != 0 {
			toks[i].RedirectURL = fmt.Sprintf("https://app.example.com/auth/%d?x=1", i)
			toks[i].Metadata = []byte(fmt.Sprintf(`{"i":%d,"nested":{"list":[1,"two",null]},"s":"<é>"}`, i))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := createPlain(ctx, s, toks[i]); err != nil {
				t.Errorf("Create(%s): %v", toks[i].ID, err)
			}
		}()
	}
	wg.Wait()
	check := func(op string, got tokens.Token, want tokens.Token) {
		t.Helper()
		if got.RedirectURL != want.RedirectURL {
			t.Errorf("%s(%s): RedirectURL got %q, want %q", op, want.ID, got.RedirectURL, want.RedirectURL)
		}
		if !sameJSON(got.Metadata, want.Metadata) {
			t.Errorf("%s(%s): Metadata got %s, want %s", op, want.ID, got.Metadata, want.Metadata)
		}
	}
	for _, want := range toks {
		got, err := s.Get(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		check("Get", got, want)
	}
	list, _, err := s.List(ctx, tokens.ListFilter{UserID: "user_meta", Limit: n})
	if err != nil || len(list) != n {
		t.Fatalf("List: got %d tokens, %v; want %d", len(list), err, n)
	}
	for _, got := range list {
		for _, want := range toks {
			if want.ID == got.ID {
				check("List", got, want)
			}
		}
	}
	later := now.Add(time.Minute)
	for i, want := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got tokens.Token
			var err error
			if i%2 == 0 {
				got, _, err = s.Redeem(ctx, want.ID, want.TicketHash, later, nil)
			} else {
				got, _, err = s.Revoke(ctx, want.ID, later, nil)
			}
			if err != nil {
				t.Errorf("change %s: %v", want.ID, err)
				return
			}
			check("Redeem/Revoke", got, want)
		}()
	}
	wg.Wait()
}

// sameJSON reports whether a and b are both absent or encode equal values;
// PostgreSQL's jsonb keeps the value, not the spelling.
func sameJSON(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
