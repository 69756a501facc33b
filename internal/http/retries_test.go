package http_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestIdempotentRedeemAndRevoke: a retry under the key of a redeem or revoke
// that succeeded answers the same 200 body; the key with another request is
// 422 idempotency_key_reused and changes nothing; a first attempt that failed
// records nothing.
func TestIdempotentRedeemAndRevoke(t *testing.T) {
	t.Parallel()
	b := setup(t)
	redeem := func(ticket any, key string) response {
		return b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, ticket), "Idempotency-Key", key)
	}
	revoke := func(id any, key string) response {
		return b.do("POST", fmt.Sprintf("/v1/sign_in_tokens/%s/revoke", id), "", "Idempotency-Key", key)
	}

	t.Run("redeem", func(t *testing.T) {
		tok := b.create(`{"user_id":"user_redeem"}`)
		first := redeem(tok["token"], "redeem-1")
		if first.status != 200 || first.body["status"] != "accepted" {
			t.Fatalf("first redeem: %d %s", first.status, first.raw)
		}
		b.clock.Advance(time.Minute)
		again := redeem(tok["token"], "redeem-1")
		if again.status != 200 || string(again.raw) != string(first.raw) {
			t.Errorf("retry: got %d %s, want the first answer %s", again.status, again.raw, first.raw)
		}
		redeem(tok["token"], "redeem-2").wantError(t, 400, "sign_in_token_already_used_code")
		b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, tok["token"])).
			wantError(t, 400, "sign_in_token_already_used_code")

		other := b.create(`{"user_id":"user_redeem"}`)
		r := redeem(other["token"], "redeem-1")
		r.wantError(t, 422, "idempotency_key_reused")
		if got := b.do("GET", "/v1/sign_in_tokens/"+other["id"].(string), ""); got.body["status"] != "pending" {
			t.Errorf("token redeemed under a reused key: status %v, want pending", got.body["status"])
		}
	})

	t.Run("revoke", func(t *testing.T) {
		tok := b.create(`{"user_id":"user_revoke"}`)
		first := revoke(tok["id"], "revoke-1")
		if first.status != 200 || first.body["status"] != "revoked" {
			t.Fatalf("first revoke: %d %s", first.status, first.raw)
		}
		b.clock.Advance(time.Minute)
		again := revoke(tok["id"], "revoke-1")
		if again.status != 200 || string(again.raw) != string(first.raw) {
			t.Errorf("retry: got %d %s, want the first answer %s", again.status, again.raw, first.raw)
		}
		revoke(tok["id"], "revoke-2").wantError(t, 400, "sign_in_token_cannot_be_revoked_code")
		other := b.create(`{"user_id":"user_revoke"}`)
		revoke(other["id"], "revoke-1").wantError(t, 422, "idempotency_key_reused")
		if r := redeem(other["token"], "revoke-other"); r.status != 200 {
			t.Errorf("redeem of the token a reused key left alone: got %d %s, want 200", r.status, r.raw)
		}
	})

	t.Run("first attempt failed", func(t *testing.T) {
		tok := b.create(`{"user_id":"user_failed"}`)
		if r := revoke(tok["id"], "failed-1"); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
		// The redeem under a fresh key fails (revoked): the key stays free.
		redeem(tok["token"], "failed-2").wantError(t, 400, "sign_in_token_revoked_code")
		fresh := b.create(`{"user_id":"user_failed"}`)
		if r := redeem(fresh["token"], "failed-2"); r.status != 200 {
			t.Errorf("key whose first use failed, reused: got %d %s, want 200", r.status, r.raw)
		}
	})

	t.Run("one key across verbs", func(t *testing.T) {
		created := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_verbs"}`, "Idempotency-Key", "verbs-1")
		if created.status != 200 {
			t.Fatalf("create: %d %s", created.status, created.raw)
		}
		redeem(created.body["token"], "verbs-1").wantError(t, 422, "idempotency_key_reused")
		revoke(created.body["id"], "verbs-1").wantError(t, 422, "idempotency_key_reused")
	})

	t.Run("key too long", func(t *testing.T) {
		tok := b.create(`{"user_id":"user_long"}`)
		long := strings.Repeat("k", 256)
		for _, r := range []response{redeem(tok["token"], long), revoke(tok["id"], long)} {
			r.wantError(t, 422, "form_param_value_invalid")
			if r.meta()["param_name"] != "Idempotency-Key" {
				t.Errorf("param_name: got %v, want Idempotency-Key", r.meta()["param_name"])
			}
		}
		if got := b.do("GET", "/v1/sign_in_tokens/"+tok["id"].(string), ""); got.body["status"] != "pending" {
			t.Errorf("token after refused requests: status %v, want pending", got.body["status"])
		}
	})
}
