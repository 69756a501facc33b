package storetest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// codeOf is the stored form the tests give the code of token id: the code
// itself, so that matching is a plain comparison the tests can count.
func codeOf(id, code string) *tokens.StoredCode {
	return &tokens.StoredCode{Hash: []byte(id + ":" + code), KeyID: "test"}
}

// guess is a CodeRedemption of code for user at, with a cap of max, that
// counts its comparisons in compared.
func guess(user, code string, at time.Time, max int, compared *atomic.Int64) tokens.CodeRedemption {
	return tokens.CodeRedemption{UserID: user, Now: at, MaxAttempts: max,
		Matches: func(tokenID string, stored tokens.StoredCode) bool {
			if compared != nil {
				compared.Add(1)
			}
			return subtle.ConstantTimeCompare(stored.Hash, codeOf(tokenID, code).Hash) == 1
		}}
}

func createCoded(t *testing.T, s tokens.Store, tok tokens.Token, code string) {
	t.Helper()
	if _, err := s.Create(context.Background(), tokens.Creation{Token: tok, Code: codeOf(tok.ID, code)}); err != nil {
		t.Fatalf("Create %s with a code: %v", tok.ID, err)
	}
}

// testRedeemCode: a code redeems its pending token once; wrong codes count
// against every pending coded token of the user, up to the cap.
func testRedeemCode(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	const max = 3
	a := token("sit_code_a", "user_code", now.Add(-time.Minute))
	b := token("sit_code_b", "user_code", now.Add(-time.Minute))
	other := token("sit_code_other", "user_other", now.Add(-time.Minute))
	createCoded(t, s, a, "111111")
	createCoded(t, s, b, "222222")
	createCoded(t, s, other, "333333")

	got, outcome, err := s.RedeemCode(ctx, guess("user_code", "111111", now, max, nil))
	if err != nil || outcome != tokens.CodeAccepted {
		t.Fatalf("right code: got %v, %v; want CodeAccepted", outcome, err)
	}
	assertToken(t, "redeemed by code", got, accepted(a, now))
	assertToken(t, "stored after redeem by code", get(t, s, a.ID), accepted(a, now))

	// Again: the code is that of a finished token.
	got, outcome, err = s.RedeemCode(ctx, guess("user_code", "111111", now, max, nil))
	if err != nil || outcome != tokens.CodeFinished || got.Status != tokens.StatusAccepted {
		t.Errorf("code of an accepted token: got %v, %s, %v; want CodeFinished, accepted", outcome, got.Status, err)
	}
	// A ticket redemption shares the single use.
	if _, ch, err := s.Redeem(ctx, a.ID, a.TicketHash, now, nil); err != nil || ch != tokens.Unchanged {
		t.Errorf("ticket after code: got %v, %v; want Unchanged", ch, err)
	}
	// Another user's code does not work for this user.
	if _, outcome, _ := s.RedeemCode(ctx, guess("user_code", "333333", now, max, nil)); outcome != tokens.CodeWrong {
		t.Errorf("another user's code: got %v, want CodeWrong", outcome)
	}
	// Wrong codes up to the cap (one is spent above), then none is left.
	for i := 2; i <= max; i++ {
		if _, outcome, err := s.RedeemCode(ctx, guess("user_code", "999999", now, max, nil)); err != nil || outcome != tokens.CodeWrong {
			t.Fatalf("wrong code %d: got %v, %v; want CodeWrong", i, outcome, err)
		}
	}
	var compared atomic.Int64
	if _, outcome, err := s.RedeemCode(ctx, guess("user_code", "222222", now, max, &compared)); err != nil || outcome != tokens.CodeNoneLeft {
		t.Errorf("right code past the cap: got %v, %v; want CodeNoneLeft", outcome, err)
	}
	if got := get(t, s, b.ID); got.Status != tokens.StatusPending {
		t.Errorf("token past its cap: %s, want pending", got.Status)
	}
	if n := compared.Load(); n != 1 { // a's code, to tell "already used"; b is past its cap
		t.Errorf("codes compared for a user past the cap: %d, want 1", n)
	}
	// The other user's code is untouched by this user's wrong codes.
	if got, outcome, err := s.RedeemCode(ctx, guess("user_other", "333333", now, max, nil)); err != nil || outcome != tokens.CodeAccepted {
		t.Errorf("other user's right code: got %v, %v; want CodeAccepted", outcome, err)
	} else {
		assertToken(t, "other user's token", got, accepted(other, now))
	}

	// Expired and revoked tokens are finished; unknown users have none left.
	expiring := token("sit_code_exp", "user_exp", now.Add(-2*time.Hour)) // expired an hour ago
	createCoded(t, s, expiring, "444444")
	if got, outcome, err := s.RedeemCode(ctx, guess("user_exp", "444444", now, max, nil)); err != nil || outcome != tokens.CodeFinished || got.ID != expiring.ID {
		t.Errorf("code of an expired token: got %v, %v, %v; want CodeFinished", outcome, got.ID, err)
	}
	revokedTok := token("sit_code_rev", "user_rev", now.Add(-time.Minute))
	createCoded(t, s, revokedTok, "555555")
	if _, ch, err := s.Revoke(ctx, revokedTok.ID, now, nil); err != nil || ch != tokens.Changed {
		t.Fatalf("Revoke: %v %v", ch, err)
	}
	if got, outcome, err := s.RedeemCode(ctx, guess("user_rev", "555555", now, max, nil)); err != nil || outcome != tokens.CodeFinished || got.Status != tokens.StatusRevoked {
		t.Errorf("code of a revoked token: got %v, %s, %v; want CodeFinished, revoked", outcome, got.Status, err)
	}
	if _, outcome, err := s.RedeemCode(ctx, guess("user_nobody", "123456", now, max, nil)); err != nil || outcome != tokens.CodeNoneLeft {
		t.Errorf("user without codes: got %v, %v; want CodeNoneLeft", outcome, err)
	}
	// A token without a code is not redeemable by code.
	plain := token("sit_code_plain", "user_plain", now.Add(-time.Minute))
	create(t, s, plain)
	if _, outcome, err := s.RedeemCode(ctx, guess("user_plain", "123456", now, max, nil)); err != nil || outcome != tokens.CodeNoneLeft {
		t.Errorf("user with an uncoded token: got %v, %v; want CodeNoneLeft", outcome, err)
	}
}

// testConcurrentWrongCodes fires 50 wrong codes at once at a user with two
// coded tokens: at most the cap is counted and compared per token, and the
// right code is then refused.
func testConcurrentWrongCodes(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	const max, guesses = 5, 50
	a := token("sit_brute_a", "user_brute", now.Add(-time.Minute))
	b := token("sit_brute_b", "user_brute", now.Add(-time.Minute))
	createCoded(t, s, a, "123456")
	createCoded(t, s, b, "654321")
	var compared atomic.Int64
	var mu sync.Mutex
	outcomes := map[tokens.CodeOutcome]int{}
	race(guesses, func(i int) {
		_, outcome, err := s.RedeemCode(ctx, guess("user_brute", fmt.Sprintf("%06d", 900000+i), now, max, &compared))
		if err != nil {
			t.Errorf("guess %d: %v", i, err)
		}
		mu.Lock()
		outcomes[outcome]++
		mu.Unlock()
	})
	if outcomes[tokens.CodeWrong] != max || outcomes[tokens.CodeNoneLeft] != guesses-max {
		t.Errorf("outcomes of %d wrong guesses: %v, want %d CodeWrong and the rest CodeNoneLeft", guesses, outcomes, max)
	}
	if n := compared.Load(); n > 2*max {
		t.Errorf("codes compared: %d, want at most %d (the cap, per token)", n, 2*max)
	}
	for _, tc := range []struct {
		tok  tokens.Token
		code string
	}{{a, "123456"}, {b, "654321"}} {
		tok, code := tc.tok, tc.code
		if _, outcome, _ := s.RedeemCode(ctx, guess("user_brute", code, now, max, nil)); outcome == tokens.CodeAccepted {
			t.Errorf("%s: the right code accepted after the cap", tok.ID)
		}
		if got := get(t, s, tok.ID); got.Status != tokens.StatusPending {
			t.Errorf("%s after the guesses: %s, want pending", tok.ID, got.Status)
		}
	}
}

// testKeyedCode: a key is checked before any code is compared.
func testKeyedCode(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	tok := token("sit_code_keyed", "user_keyed", now.Add(-time.Minute))
	createCoded(t, s, tok, "246810")
	right := guess("user_keyed", "246810", now, 5, nil)
	right.Key = keyAt("code-key", "right", now)
	first, outcome, err := s.RedeemCode(ctx, right)
	if err != nil || outcome != tokens.CodeAccepted {
		t.Fatalf("keyed code: got %v, %v", outcome, err)
	}
	again, outcome, err := s.RedeemCode(ctx, right)
	if err != nil || outcome != tokens.CodeReplayed {
		t.Fatalf("retry of keyed code: got %v, %v; want CodeReplayed", outcome, err)
	}
	assertToken(t, "replayed code redemption", again, first)

	var compared atomic.Int64
	wrong := guess("user_keyed", "000000", now, 5, &compared)
	wrong.Key = keyAt("code-key", "wrong", now)
	if _, _, err := s.RedeemCode(ctx, wrong); !errors.Is(err, tokens.ErrIdempotencyMismatch) {
		t.Errorf("key reused for another code: got %v, want %v", err, tokens.ErrIdempotencyMismatch)
	}
	if compared.Load() != 0 {
		t.Errorf("codes compared under a reused key: %d, want 0", compared.Load())
	}
}

// testRevokeUser: every pending token of the user, expired ones included,
// and nothing else.
func testRevokeUser(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	p1 := token("sit_ru_1", "user_ru", now.Add(-3*time.Minute))
	p2 := token("sit_ru_2", "user_ru", now.Add(-2*time.Minute))
	expired := token("sit_ru_exp", "user_ru", now.Add(-2*time.Hour))
	done := accepted(token("sit_ru_done", "user_ru", now.Add(-time.Minute)), now.Add(-time.Second))
	someoneElse := token("sit_ru_else", "user_else", now.Add(-time.Minute))
	create(t, s, p1, p2, expired, done, someoneElse)

	got, err := s.RevokeUser(ctx, tokens.KindSignIn, "user_ru", now)
	if err != nil {
		t.Fatal(err)
	}
	want := []tokens.Token{revoked(p2, now), revoked(p1, now), revoked(expired, now)}
	if len(got) != len(want) {
		t.Fatalf("revoked: got %d tokens, want %d", len(got), len(want))
	}
	for i := range want {
		assertToken(t, fmt.Sprintf("revoked #%d", i), got[i], want[i])
		assertToken(t, fmt.Sprintf("stored #%d", i), get(t, s, want[i].ID), want[i])
	}
	assertToken(t, "accepted token", get(t, s, done.ID), done)
	assertToken(t, "another user's token", get(t, s, someoneElse.ID), someoneElse)
	if got, err := s.RevokeUser(ctx, tokens.KindSignIn, "user_ru", now); err != nil || len(got) != 0 {
		t.Errorf("second RevokeUser: got %d, %v; want none", len(got), err)
	}
}

// testRevokePrevious: a create that revokes the user's others does it in the
// same transaction; a create refused for its id revokes nothing.
func testRevokePrevious(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	old := token("sit_rp_old", "user_rp", now.Add(-time.Minute))
	create(t, s, old)
	fresh := token("sit_rp_new", "user_rp", now)
	res, err := s.Create(ctx, tokens.Creation{Token: fresh, RevokePrevious: true})
	if err != nil || !res.Created || len(res.Revoked) != 1 {
		t.Fatalf("Create revoking previous: got %+v, %v", res, err)
	}
	assertToken(t, "revoked by the create", res.Revoked[0], revoked(old, now))
	assertToken(t, "old token", get(t, s, old.ID), revoked(old, now))
	assertToken(t, "new token", get(t, s, fresh.ID), fresh)

	third := token("sit_rp_new", "user_rp", now.Add(time.Second)) // the id is taken
	if _, err := s.Create(ctx, tokens.Creation{Token: third, RevokePrevious: true}); err == nil {
		t.Fatal("Create of an id already stored: got nil, want an error")
	}
	assertToken(t, "token left by a refused create", get(t, s, fresh.ID), fresh)
}

// testRevokeUserRacesRedeem: bulk revocations race redemptions of the same
// tokens; each token ends redeemed or revoked, and the answers agree with
// what is stored.
func testRevokeUserRacesRedeem(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	const n = 30
	var toks []tokens.Token
	for i := range n {
		tok := token(fmt.Sprintf("sit_rr_%02d", i), "user_rr", now.Add(-time.Minute))
		create(t, s, tok)
		toks = append(toks, tok)
	}
	redeemed := make([]bool, n)
	var revokedIDs sync.Map
	race(n+3, func(i int) {
		if i >= n {
			list, err := s.RevokeUser(ctx, tokens.KindSignIn, "user_rr", now)
			if err != nil {
				t.Errorf("RevokeUser: %v", err)
			}
			for _, tok := range list {
				if _, dup := revokedIDs.LoadOrStore(tok.ID, true); dup {
					t.Errorf("%s revoked twice", tok.ID)
				}
			}
			return
		}
		_, ch, err := s.Redeem(ctx, toks[i].ID, toks[i].TicketHash, now, nil)
		if err != nil {
			t.Errorf("Redeem %d: %v", i, err)
		}
		redeemed[i] = ch == tokens.Changed
	})
	for i, tok := range toks {
		_, wasRevoked := revokedIDs.Load(tok.ID)
		got := get(t, s, tok.ID).Status
		switch {
		case redeemed[i] == wasRevoked:
			t.Errorf("%s: redeemed %v, revoked %v; want exactly one", tok.ID, redeemed[i], wasRevoked)
		case redeemed[i] && got != tokens.StatusAccepted, wasRevoked && got != tokens.StatusRevoked:
			t.Errorf("%s: stored %s, redeemed %v", tok.ID, got, redeemed[i])
		}
	}
}

// testActorTokens: actor tokens keep their actor and session duration, go
// through the same verbs, and are listed and bulk-revoked apart from sign-in
// tokens.
func testActorTokens(t *testing.T, s tokens.Store) {
	ctx := context.Background()
	act := token("act_0000000000000000000000000a", "user_act", now.Add(-time.Minute))
	act.Actor, act.SessionMaxDuration = []byte(`{"sub":"user_support","team":"care"}`), 30*time.Minute
	other := token("act_0000000000000000000000000b", "user_act", now.Add(-time.Second))
	other.Actor, other.SessionMaxDuration = []byte(`{"sub":"user_support"}`), time.Hour
	plain := token("sit_0000000000000000000000000c", "user_act", now)
	for _, tok := range []tokens.Token{act, other, plain} {
		if _, err := s.Create(ctx, tokens.Creation{Token: tok}); err != nil {
			t.Fatalf("Create %s: %v", tok.ID, err)
		}
	}
	check := func(what string, got, want tokens.Token) {
		t.Helper()
		assertToken(t, what, got, want)
		if !sameJSON(got.Actor, want.Actor) || got.SessionMaxDuration != want.SessionMaxDuration {
			t.Errorf("%s: actor %s for %v, want %s for %v", what, got.Actor, got.SessionMaxDuration, want.Actor, want.SessionMaxDuration)
		}
	}
	check("Get", get(t, s, act.ID), act)
	check("Get of a sign-in token", get(t, s, plain.ID), plain)
	for kind, want := range map[tokens.Kind][]tokens.Token{tokens.KindActor: {other, act}, tokens.KindSignIn: {plain}, "": {plain}} {
		list, total, err := s.List(ctx, tokens.ListFilter{Kind: kind, UserID: "user_act", Limit: 10})
		if err != nil || total != len(want) || len(list) != len(want) {
			t.Fatalf("List %q: %d of %d, %v; want %d", kind, len(list), total, err, len(want))
		}
		for i := range want {
			check(fmt.Sprintf("List %q #%d", kind, i), list[i], want[i])
		}
	}
	got, ch, err := s.Redeem(ctx, act.ID, act.TicketHash, now, nil)
	if err != nil || ch != tokens.Changed {
		t.Fatalf("Redeem: %v, %v", ch, err)
	}
	check("Redeem", got, accepted(act, now))
	revokedList, err := s.RevokeUser(ctx, tokens.KindSignIn, "user_act", now)
	if err != nil || len(revokedList) != 1 || revokedList[0].ID != plain.ID {
		t.Errorf("RevokeUser of sign-in tokens: %v, %v; want only %s", revokedList, err, plain.ID)
	}
	if got := get(t, s, other.ID); got.Status != tokens.StatusPending {
		t.Errorf("actor token after revoking the user's sign-in tokens: %s", got.Status)
	}
	revokedList, err = s.RevokeUser(ctx, tokens.KindActor, "user_act", now)
	if err != nil || len(revokedList) != 1 || revokedList[0].ID != other.ID {
		t.Errorf("RevokeUser of actor tokens: %v, %v; want only %s", revokedList, err, other.ID)
	}
}
