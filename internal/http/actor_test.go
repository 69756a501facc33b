package http_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestActorTokens: Clerk's actor token API, created with its defaults, read,
// listed apart from sign-in tokens, redeemed once through the common redeem
// route with the actor in the answer, and revoked with its own codes.
func TestActorTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := b.clock.Now()
	r := b.do("POST", "/v1/actor_tokens", `{"user_id":"user_a","actor":{"sub":"user_support","reason":"ticket 42"}}`)
	if r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	tok := r.body
	id := tok["id"].(string)
	if tok["object"] != "actor_token" || !strings.HasPrefix(id, "act_") || tok["status"] != "pending" || tok["user_id"] != "user_a" ||
		tok["expires_at"] != float64(now.Add(time.Hour).UnixMilli()) || tok["session_max_duration_in_seconds"] != float64(1800) {
		t.Errorf("create: %s", r.raw)
	}
	if actor, _ := tok["actor"].(map[string]any); actor["sub"] != "user_support" || actor["reason"] != "ticket 42" {
		t.Errorf("actor: %v", tok["actor"])
	}
	claims, err := b.ticketer.Verify(tok["token"].(string))
	if err != nil || claims.Type != "actor_token" || claims.Actor == nil || claims.Actor.Subject != "user_support" || claims.Subject != "user_a" {
		t.Fatalf("ticket claims: %+v, %v", claims, err)
	}
	custom := b.do("POST", "/actor_tokens", `{"user_id":"user_a","actor":{"sub":"s"},"expires_in_seconds":60,"session_max_duration_in_seconds":600}`)
	if custom.status != 200 || custom.body["expires_at"] != float64(now.Add(time.Minute).UnixMilli()) || custom.body["session_max_duration_in_seconds"] != float64(600) {
		t.Errorf("create with values: %d %s", custom.status, custom.raw)
	}
	plain := b.create(`{"user_id":"user_a"}`)

	// Read and list: each kind on its own routes only.
	if got := b.do("GET", "/v1/actor_tokens/"+id, ""); got.status != 200 || got.body["token"] != nil || got.body["object"] != "actor_token" {
		t.Errorf("get: %d %s", got.status, got.raw)
	}
	b.do("GET", "/v1/sign_in_tokens/"+id, "").wantError(t, 404, "resource_not_found")
	b.do("GET", "/v1/actor_tokens/"+plain["id"].(string), "").wantError(t, 404, "resource_not_found")
	for path, want := range map[string]int{"/v1/actor_tokens?user_id=user_a": 2, "/v1/sign_in_tokens?user_id=user_a": 1, "/v1/actor_tokens": 2} {
		got := b.do("GET", path, "")
		if got.status != 200 || got.body["total_count"] != float64(want) || len(got.body["data"].([]any)) != want {
			t.Errorf("%s: %s, want %d", path, got.raw, want)
		}
		for _, item := range got.body["data"].([]any) {
			kind := item.(map[string]any)["object"]
			if strings.Contains(path, "actor") != (kind == "actor_token") {
				t.Errorf("%s lists a %v", path, kind)
			}
		}
	}

	// Redeem, through the common route: the actor_token object, once.
	red := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, tok["token"]))
	if red.status != 200 || red.body["object"] != "actor_token" || red.body["status"] != "accepted" || red.body["actor"] == nil {
		t.Fatalf("redeem: %d %s", red.status, red.raw)
	}
	b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, tok["token"])).wantError(t, 400, "actor_token_already_used_code")
	b.do("POST", "/v1/tickets/verify", fmt.Sprintf(`{"ticket":%q}`, tok["token"])).wantError(t, 400, "actor_token_already_used_code")
	b.do("POST", "/v1/actor_tokens/"+id+"/revoke", "").wantError(t, 400, "actor_token_cannot_be_revoked_code")

	// Revoke: its own route only, then its own code.
	b.do("POST", "/v1/sign_in_tokens/"+custom.body["id"].(string)+"/revoke", "").wantError(t, 404, "resource_not_found")
	b.do("POST", "/v1/actor_tokens/"+plain["id"].(string)+"/revoke", "").wantError(t, 404, "resource_not_found")
	if rv := b.do("POST", "/v1/actor_tokens/"+custom.body["id"].(string)+"/revoke", ""); rv.status != 200 || rv.body["status"] != "revoked" {
		t.Fatalf("revoke: %d %s", rv.status, rv.raw)
	}
	b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, custom.body["token"])).wantError(t, 400, "actor_token_revoked_code")
	// Revoking all of a user's sign-in tokens leaves their actor tokens be.
	third := b.do("POST", "/v1/actor_tokens", `{"user_id":"user_a","actor":{"sub":"s"}}`)
	b.do("POST", "/v1/users/user_a/sign_in_tokens/revoke", "")
	if got := b.do("GET", "/v1/actor_tokens/"+third.body["id"].(string), ""); got.body["status"] != "pending" {
		t.Errorf("actor token after revoking the user's sign-in tokens: %v", got.body["status"])
	}

	// A ticket of ours for an actor token that is not stored.
	unstored := b.sign(jwt.MapClaims{"sub": "user_a", "st": "actor_token", "act": map[string]any{"sub": "s"}}, "act_")
	b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, unstored)).wantError(t, 400, "actor_token_cannot_be_used_code")
}

// TestActorTokenParams: every refusal of an actor token's create body.
func TestActorTokenParams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tt := range []struct {
		name, body  string
		status      int
		code, param string
	}{
		{"no user", `{"actor":{"sub":"s"}}`, 422, "form_param_missing", "user_id"},
		{"no actor", `{"user_id":"u"}`, 422, "form_param_missing", "actor"},
		{"actor not an object", `{"user_id":"u","actor":"s"}`, 422, "form_param_type_invalid", "actor"},
		{"actor without sub", `{"user_id":"u","actor":{"name":"s"}}`, 422, "form_param_value_invalid", "actor"},
		{"actor with an empty sub", `{"user_id":"u","actor":{"sub":""}}`, 422, "form_param_value_invalid", "actor"},
		{"actor with a number sub", `{"user_id":"u","actor":{"sub":7}}`, 422, "form_param_value_invalid", "actor"},
		{"actor too large", `{"user_id":"u","actor":{"sub":"s","x":"` + strings.Repeat("a", 5000) + `"}}`, 422, "form_param_value_invalid", "actor"},
		{"expiry zero", `{"user_id":"u","actor":{"sub":"s"},"expires_in_seconds":0}`, 422, "form_param_value_invalid", "expires_in_seconds"},
		{"session zero", `{"user_id":"u","actor":{"sub":"s"},"session_max_duration_in_seconds":0}`, 422, "form_param_value_invalid", "session_max_duration_in_seconds"},
		{"session of the wrong type", `{"user_id":"u","actor":{"sub":"s"},"session_max_duration_in_seconds":"60"}`, 422, "form_param_type_invalid", "session_max_duration_in_seconds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do("POST", "/v1/actor_tokens", tt.body)
			r.wantError(t, tt.status, tt.code)
			if r.meta()["param_name"] != tt.param {
				t.Errorf("param_name: got %v, want %s", r.meta()["param_name"], tt.param)
			}
		})
	}
	// A retried create under its key returns the same token and ticket.
	first := b.do("POST", "/v1/actor_tokens", `{"user_id":"u","actor":{"sub":"s"}}`, "Idempotency-Key", "actor-1")
	again := b.do("POST", "/v1/actor_tokens", `{"user_id":"u","actor":{"sub":"s"}}`, "Idempotency-Key", "actor-1")
	if first.status != 200 || string(first.raw) != string(again.raw) {
		t.Errorf("idempotent create: %s then %s", first.raw, again.raw)
	}
	b.do("POST", "/v1/actor_tokens", `{"user_id":"u","actor":{"sub":"someone else"}}`, "Idempotency-Key", "actor-1").
		wantError(t, 422, "idempotency_key_reused")
}

// TestKindsCannotPassForEachOther: tickets whose st or act was altered and
// re-signed with the service's own key never redeem a token of the other
// kind, nor their own, and change nothing.
func TestKindsCannotPassForEachOther(t *testing.T) {
	t.Parallel()
	b := setup(t)
	signIn := b.create(`{"user_id":"user_k"}`)
	actor := b.do("POST", "/v1/actor_tokens", `{"user_id":"user_k","actor":{"sub":"user_support"}}`).body
	claimsOf := func(ticket any) jwt.MapClaims {
		c := jwt.MapClaims{}
		if _, _, err := jwt.NewParser().ParseUnverified(ticket.(string), c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	alter := func(ticket any, change func(jwt.MapClaims)) string {
		c := claimsOf(ticket)
		change(c)
		return b.sign(c, "")
	}
	cases := []struct {
		name   string
		ticket string
	}{
		{"sign-in ticket with an act claim", alter(signIn["token"], func(c jwt.MapClaims) { c["act"] = map[string]any{"sub": "x"} })},
		{"sign-in ticket called an actor ticket", alter(signIn["token"], func(c jwt.MapClaims) {
			c["st"] = "actor_token"
			c["act"] = map[string]any{"sub": "x"}
		})},
		{"sign-in ticket with an actor token's id", alter(signIn["token"], func(c jwt.MapClaims) { c["jti"], c["sid"] = actor["id"], actor["id"] })},
		{"actor ticket called a sign-in ticket", alter(actor["token"], func(c jwt.MapClaims) {
			c["st"] = "sign_in_token"
			delete(c, "act")
		})},
		{"actor ticket without act", alter(actor["token"], func(c jwt.MapClaims) { delete(c, "act") })},
		{"actor ticket with another actor", alter(actor["token"], func(c jwt.MapClaims) { c["act"] = map[string]any{"sub": "user_admin"} })},
		{"actor ticket with an empty act", alter(actor["token"], func(c jwt.MapClaims) { c["act"] = map[string]any{"sub": ""} })},
		{"actor ticket for a sign-in token's id", alter(actor["token"], func(c jwt.MapClaims) { c["jti"], c["sid"] = signIn["id"], signIn["id"] })},
		{"actor ticket for another user", alter(actor["token"], func(c jwt.MapClaims) { c["sub"] = "user_other" })},
	}
	before := b.snapshot()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, route := range []string{"/v1/tickets/redeem", "/v1/tickets/verify"} {
				b.do("POST", route, fmt.Sprintf(`{"ticket":%q}`, tc.ticket)).wantError(t, 400, "ticket_invalid_code")
			}
		})
	}
	if after := b.snapshot(); string(before) != string(after) {
		t.Errorf("altered tickets changed stored tokens:\nbefore %s\nafter  %s", before, after)
	}
	// The genuine tickets still redeem, each as its own kind.
	for ticket, kind := range map[any]string{signIn["token"]: "sign_in_token", actor["token"]: "actor_token"} {
		r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, ticket))
		if r.status != 200 || r.body["object"] != kind {
			t.Errorf("genuine %s ticket: %d %s", kind, r.status, r.raw)
		}
	}
}

// sign signs claims with the service's key, filling in what is missing: the
// issuer, times, and a new id of the given prefix when prefix is not "".
func (b *bundle) sign(c jwt.MapClaims, prefix string) string {
	b.t.Helper()
	now := b.clock.Now()
	if prefix != "" {
		id := prefix + "000000" + "unstoredactortokenidx" // a time part, then 21 characters
		c["jti"], c["sid"] = id, id
	}
	for k, v := range map[string]any{"iss": testIssuer, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()} {
		if _, ok := c[k]; !ok {
			c[k] = v
		}
	}
	signer := b.keys.Signer()
	jt := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	jt.Header["kid"] = signer.ID
	s, err := jt.SignedString(signer.Private)
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}
