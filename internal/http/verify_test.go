package http_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestVerify checks each answer of POST /v1/tickets/verify: the stored
// object for a ticket a redeem would accept, and otherwise the redeem's
// error, status and body alike.
func TestVerify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := b.create(`{"user_id":"user_v","org_id":"org_1","metadata":{"locale":"de"}}`)
	used := b.create(`{"user_id":"user_u"}`)
	b.mustStatus(b.do("POST", "/v1/tickets/redeem", ticketBody(used)), 200)
	revoked := b.create(`{"user_id":"user_r"}`)
	b.mustStatus(b.do("POST", "/v1/sign_in_tokens/"+revoked["id"].(string)+"/revoke", ""), 200)
	expiring := b.create(`{"user_id":"user_e","expires_in_seconds":60}`)
	unstored, err := b.ticketer.Sign(tokens.Token{ID: tokens.KindSignIn.NewID(b.clock.Now()), UserID: "user_x",
		CreatedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Minute)

	r := b.do("POST", "/v1/tickets/verify", ticketBody(good))
	if r.status != 200 || r.body["status"] != "pending" || r.body["id"] != good["id"] || r.body["org_id"] != "org_1" {
		t.Errorf("verify of a good ticket: got %d %s, want 200 with the pending token", r.status, r.raw)
	}
	if m, _ := r.body["metadata"].(map[string]any); m["locale"] != "de" {
		t.Errorf("verify: metadata got %v, want {locale: de}", r.body["metadata"])
	}
	if _, ok := r.body["token"]; ok {
		t.Errorf("verify shows the ticket: %s", r.raw)
	}
	for _, c := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"missing", `{}`, 422, "form_param_missing"},
		{"not a ticket", `{"ticket":"abc.def.ghi"}`, 400, "ticket_invalid_code"},
		{"wrong type", `{"ticket":12}`, 422, "form_param_type_invalid"},
		{"expired", ticketBody(expiring), 400, "ticket_expired_code"},
		{"used", ticketBody(used), 400, "sign_in_token_already_used_code"},
		{"revoked", ticketBody(revoked), 400, "sign_in_token_revoked_code"},
		{"not stored", `{"ticket":"` + unstored + `"}`, 400, "sign_in_token_cannot_be_used_code"},
		{"bad body", `{"ticket":`, 400, "request_body_invalid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := b.do("POST", "/v1/tickets/verify", c.body)
			v.wantError(t, c.status, c.code)
			if c.code == "form_param_missing" || c.code == "form_param_type_invalid" {
				if got := v.meta()["param_name"]; got != "ticket" {
					t.Errorf("param_name: got %v, want ticket", got)
				}
			}
			if red := b.do("POST", "/v1/tickets/redeem", c.body); red.status != v.status || red.code() != v.code() {
				t.Errorf("redeem answers %d %s, verify %d %s", red.status, red.code(), v.status, v.code())
			}
		})
	}
	// Verify needs a key, like every admin route.
	b.do("POST", "/v1/tickets/verify", ticketBody(good), "Authorization", "").wantError(t, 401, "clerk_key_invalid")
	// The good ticket is still good, and verify did not touch it.
	if r := b.do("POST", "/v1/tickets/redeem", ticketBody(good)); r.status != 200 {
		t.Errorf("redeem after verify: got %d %s, want 200", r.status, r.raw)
	}
}

// TestVerifyProperty runs seeded random sequences of verify, redeem and
// revoke calls over a few tokens, with a clock that moves past their
// expiries, against the real store. After every call it checks that
//   - verify changed no row (status, updated_at, nothing);
//   - verify answered what the model says a redeem answers now, and a redeem
//     sent right after it, at the same moment, answers the same;
//   - redeem and revoke answered as the model says, which the model follows.
func TestVerifyProperty(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			runVerifyProperty(t, seed, 120)
		})
	}
}

// modelToken is what the model knows of one token.
type modelToken struct {
	id      string
	status  string
	expires time.Time
}

// verifyCase is one ticket the sequence may present, with the token it
// names (nil for tickets no stored token matches).
type verifyCase struct {
	ticket string
	token  *modelToken
	forged bool // signed by us, the token's id, but not the ticket issued
}

func runVerifyProperty(t *testing.T, seed uint64, steps int) {
	b := setup(t)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var model []*modelToken
	var cases []verifyCase
	for i, ttl := range []int{30, 90, 240, 3600} {
		obj := b.create(fmt.Sprintf(`{"user_id":"user_%d","expires_in_seconds":%d}`, i, ttl))
		m := &modelToken{id: obj["id"].(string), status: "pending", expires: b.clock.Now().Add(time.Duration(ttl) * time.Second)}
		model = append(model, m)
		cases = append(cases, verifyCase{ticket: obj["token"].(string), token: m})
		forged, err := b.ticketer.Sign(tokens.Token{ID: m.id, UserID: "user_other",
			CreatedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, verifyCase{ticket: forged, token: m, forged: true})
	}
	unstored, _ := b.ticketer.Sign(tokens.Token{ID: tokens.KindSignIn.NewID(b.clock.Now()), UserID: "user_x",
		CreatedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(24 * time.Hour)})
	cases = append(cases, verifyCase{ticket: unstored}, verifyCase{ticket: "garbage.ticket.x"}, verifyCase{ticket: ""})

	// expect is the model's answer to a redeem of c now: status and code
	// ("" for 200), in the contract's order of checks.
	expect := func(c verifyCase) (int, string) {
		now := b.clock.Now()
		switch {
		case c.ticket == "":
			return 422, "form_param_missing"
		case c.ticket == unstored:
			return 400, "sign_in_token_cannot_be_used_code"
		case c.token == nil:
			return 400, "ticket_invalid_code"
		case c.forged:
			return 400, "ticket_invalid_code"
		case !now.Before(c.token.expires):
			return 400, "ticket_expired_code"
		case c.token.status == "accepted":
			return 400, "sign_in_token_already_used_code"
		case c.token.status == "revoked":
			return 400, "sign_in_token_revoked_code"
		}
		return 200, ""
	}
	rows := func() []tokens.Token {
		out := make([]tokens.Token, len(model))
		for i, m := range model {
			tok, err := b.store.Get(context.Background(), m.id)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = tok
		}
		return out
	}
	answer := func(r response) (int, string) { return r.status, r.code() }
	body := func(c verifyCase) string {
		if c.ticket == "" {
			return `{}`
		}
		return `{"ticket":"` + c.ticket + `"}`
	}
	for step := 0; step < steps; step++ {
		c := cases[rng.IntN(len(cases))]
		switch op := rng.IntN(20); {
		case op < 10: // verify, and sometimes a redeem right after it
			before := rows()
			r := b.do("POST", "/v1/tickets/verify", body(c))
			if after := rows(); !reflect.DeepEqual(before, after) {
				t.Fatalf("step %d: verify changed rows:\nbefore %+v\nafter  %+v", step, before, after)
			}
			wantStatus, wantCode := expect(c)
			if s, code := answer(r); s != wantStatus || code != wantCode {
				t.Fatalf("step %d: verify got %d %q, want %d %q (%s)", step, s, code, wantStatus, wantCode, r.raw)
			}
			if r.status == 200 && (r.body["status"] != "pending" || r.body["id"] != c.token.id) {
				t.Fatalf("step %d: verify got %s, want the pending token %s", step, r.raw, c.token.id)
			}
			if rng.IntN(3) == 0 {
				red := b.do("POST", "/v1/tickets/redeem", body(c))
				if s, code := answer(red); s != r.status || code != r.code() {
					t.Fatalf("step %d: redeem right after verify got %d %q, verify said %d %q", step, s, code, r.status, r.code())
				}
				if red.status == 200 {
					c.token.status = "accepted"
				}
			}
		case op < 14: // redeem
			r := b.do("POST", "/v1/tickets/redeem", body(c))
			wantStatus, wantCode := expect(c)
			if s, code := answer(r); s != wantStatus || code != wantCode {
				t.Fatalf("step %d: redeem got %d %q, want %d %q", step, s, code, wantStatus, wantCode)
			}
			if r.status == 200 {
				c.token.status = "accepted"
			}
		case op < 17: // revoke
			m := model[rng.IntN(len(model))]
			r := b.do("POST", "/v1/sign_in_tokens/"+m.id+"/revoke", "")
			if m.status == "pending" {
				if r.status != 200 {
					t.Fatalf("step %d: revoke of pending %s got %d %s", step, m.id, r.status, r.raw)
				}
				m.status = "revoked"
			} else if r.status != 400 || r.code() != "sign_in_token_cannot_be_revoked_code" {
				t.Fatalf("step %d: revoke of %s %s got %d %s", step, m.status, m.id, r.status, r.raw)
			}
		default: // the clock moves on, in whole seconds, across expiries
			b.clock.Advance(time.Duration(1+rng.IntN(40)) * time.Second)
		}
	}
}

// ticketBody is the redeem or verify body for a created token's ticket.
func ticketBody(created map[string]any) string {
	return `{"ticket":"` + created["token"].(string) + `"}`
}

// mustStatus fails the test unless r has the status.
func (b *bundle) mustStatus(r response, status int) response {
	b.t.Helper()
	if r.status != status {
		b.t.Fatalf("got %d %s, want %d", r.status, r.raw, status)
	}
	return r
}
