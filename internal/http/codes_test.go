package http_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
)

var codePattern = regexp.MustCompile(`^[0-9]+$`)

// redeemCode redeems user's code.
func (b *bundle) redeemCode(user, code string, headers ...string) response {
	b.t.Helper()
	return b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"user_id":%q,"code":%q}`, user, code), headers...)
}

// TestCodes: a code of the asked length in the create response only; it
// redeems its token once, shares the single use with the ticket, and wrong
// codes get 422 form_code_incorrect until the cap, then 400
// verification_failed.
func TestCodes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.create(`{"user_id":"user_code","code_length":8}`)
	code, _ := created["code"].(string)
	if len(code) != 8 || !codePattern.MatchString(code) {
		t.Fatalf("code: got %q, want 8 digits", created["code"])
	}
	id := created["id"].(string)
	if got := b.do("GET", "/v1/sign_in_tokens/"+id, ""); got.body["code"] != nil {
		t.Errorf("get shows the code: %s", got.raw)
	}
	if got := b.do("GET", "/v1/sign_in_tokens?user_id=user_code", ""); got.status != 200 || strings.Contains(string(got.raw), `"code"`) {
		t.Errorf("list shows the code: %s", got.raw)
	}

	r := b.redeemCode("user_code", code)
	if r.status != 200 || r.body["id"] != id || r.body["status"] != "accepted" || r.body["code"] != nil {
		t.Fatalf("redeem by code: %d %s", r.status, r.raw)
	}
	b.redeemCode("user_code", code).wantError(t, 400, "sign_in_token_already_used_code")
	b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, created["token"])).
		wantError(t, 400, "sign_in_token_already_used_code")

	// A ticket redemption uses the code up too.
	second := b.create(`{"user_id":"user_code2","code_length":6}`)
	if r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, second["token"])); r.status != 200 {
		t.Fatalf("redeem by ticket: %d %s", r.status, r.raw)
	}
	b.redeemCode("user_code2", second["code"].(string)).wantError(t, 400, "sign_in_token_already_used_code")

	// Wrong codes: counted up to the cap (5), then nothing is left.
	third := b.create(`{"user_id":"user_guess","code_length":6}`)
	wrong := "000000"
	if third["code"] == wrong {
		wrong = "111111"
	}
	for i := range 5 {
		r := b.redeemCode("user_guess", wrong)
		r.wantError(t, 422, "form_code_incorrect")
		if r.meta()["param_name"] != "code" {
			t.Errorf("wrong code %d: param_name %v, want code", i+1, r.meta()["param_name"])
		}
	}
	b.redeemCode("user_guess", third["code"].(string)).wantError(t, 400, "verification_failed")
	if got := b.do("GET", "/v1/sign_in_tokens/"+third["id"].(string), ""); got.body["status"] != "pending" {
		t.Errorf("token past its cap: status %v, want pending", got.body["status"])
	}
	// Its ticket still works: the cap is on codes.
	if r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, third["token"])); r.status != 200 {
		t.Errorf("ticket of a token past its code cap: %d %s", r.status, r.raw)
	}
	b.redeemCode("user_nobody", "123456").wantError(t, 400, "verification_failed")

	// Expired and revoked coded tokens say so.
	expiring := b.create(`{"user_id":"user_exp","code_length":6,"expires_in_seconds":60}`)
	b.clock.Advance(61e9)
	b.redeemCode("user_exp", expiring["code"].(string)).wantError(t, 400, "ticket_expired_code")
	revoked := b.create(`{"user_id":"user_rev","code_length":6}`)
	if r := b.do("POST", "/v1/sign_in_tokens/"+revoked["id"].(string)+"/revoke", ""); r.status != 200 {
		t.Fatal(r.status)
	}
	b.redeemCode("user_rev", revoked["code"].(string)).wantError(t, 400, "sign_in_token_revoked_code")
}

// TestCodeParams: every refusal of a code parameter, in the contract's shape.
func TestCodeParams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const create, redeem = "/v1/sign_in_tokens", "/v1/tickets/redeem"
	tests := []struct {
		name, path, body string
		status           int
		code, param      string
	}{
		{"code_length too short", create, `{"user_id":"u","code_length":5}`, 422, "form_param_value_invalid", "code_length"},
		{"code_length too long", create, `{"user_id":"u","code_length":11}`, 422, "form_param_value_invalid", "code_length"},
		{"code_length of the wrong type", create, `{"user_id":"u","code_length":"6"}`, 422, "form_param_type_invalid", "code_length"},
		{"revoke_previous of the wrong type", create, `{"user_id":"u","revoke_previous":"yes"}`, 422, "form_param_type_invalid", "revoke_previous"},
		{"code without user", redeem, `{"code":"123456"}`, 422, "form_param_missing", "user_id"},
		{"user without code", redeem, `{"user_id":"u"}`, 422, "form_param_missing", "code"},
		{"code of the wrong type", redeem, `{"user_id":"u","code":123456}`, 422, "form_param_type_invalid", "code"},
		{"code not digits", redeem, `{"user_id":"u","code":"12345a"}`, 422, "form_code_incorrect", "code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do("POST", tt.path, tt.body)
			r.wantError(t, tt.status, tt.code)
			if r.meta()["param_name"] != tt.param {
				t.Errorf("param_name: got %v, want %s", r.meta()["param_name"], tt.param)
			}
		})
	}
	// Form bodies carry them too.
	r := b.do("POST", "/v1/sign_in_tokens", "user_id=user_form&code_length=6&revoke_previous=true",
		"Content-Type", "application/x-www-form-urlencoded")
	if r.status != 200 || len(r.body["code"].(string)) != 6 {
		t.Errorf("form create with a code: %d %s", r.status, r.raw)
	}
}

// TestCodeRateLimit: redemptions by code are limited per user_id, and
// another user keeps a budget of its own.
func TestCodeRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.limits = apihttp.RateLimits{CodePerUser: 3} })
	b.create(`{"user_id":"user_rl","code_length":6}`)
	for i := range 3 {
		if r := b.redeemCode("user_rl", "000001"); r.status != 422 && r.status != 400 {
			t.Fatalf("guess %d: %d %s", i+1, r.status, r.raw)
		}
	}
	r := b.redeemCode("user_rl", "000002")
	r.wantError(t, 429, "too_many_requests")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if r := b.redeemCode("user_other", "000001"); r.status == 429 {
		t.Errorf("another user: got 429, want its own budget")
	}
}

// TestRevokeUser: every pending token of the user, and nothing else; with
// nothing pending, an empty list.
func TestRevokeUser(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.create(`{"user_id":"user_all"}`)
	b.clock.Advance(1e6)
	second := b.create(`{"user_id":"user_all","code_length":6}`)
	used := b.create(`{"user_id":"user_all"}`)
	if r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, used["token"])); r.status != 200 {
		t.Fatal(r.status)
	}
	other := b.create(`{"user_id":"user_kept"}`)

	for _, path := range []string{"/v1/users/user_all/sign_in_tokens/revoke", "/users/user_all/sign_in_tokens/revoke"} {
		r := b.do("POST", path, "")
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.raw)
		}
		data, _ := r.body["data"].([]any)
		switch path {
		case "/v1/users/user_all/sign_in_tokens/revoke":
			if r.body["total_count"] != float64(2) || len(data) != 2 {
				t.Fatalf("revoked: %s, want 2 tokens", r.raw)
			}
			for i, want := range []any{second["id"], first["id"]} {
				tok := data[i].(map[string]any)
				if tok["id"] != want || tok["status"] != "revoked" || tok["token"] != nil || tok["code"] != nil {
					t.Errorf("revoked #%d: %v, want %v revoked, without token or code", i, tok, want)
				}
			}
		default:
			if r.body["total_count"] != float64(0) || data == nil || len(data) != 0 {
				t.Errorf("second revoke: %s, want {\"data\":[],\"total_count\":0}", r.raw)
			}
		}
	}
	b.redeemCode("user_all", second["code"].(string)).wantError(t, 400, "sign_in_token_revoked_code")
	if got := b.do("GET", "/v1/sign_in_tokens/"+other["id"].(string), ""); got.body["status"] != "pending" {
		t.Errorf("another user's token: %v, want pending", got.body["status"])
	}
	if got := b.do("GET", "/v1/sign_in_tokens/"+used["id"].(string), ""); got.body["status"] != "accepted" {
		t.Errorf("an accepted token: %v, want accepted", got.body["status"])
	}
}

// TestRevokePrevious: a create with revoke_previous leaves the user's new
// token as the only pending one.
func TestRevokePrevious(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old := b.create(`{"user_id":"user_rp"}`)
	fresh := b.create(`{"user_id":"user_rp","revoke_previous":true}`)
	if fresh["status"] != "pending" {
		t.Fatalf("new token: %v", fresh)
	}
	b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, old["token"])).
		wantError(t, 400, "sign_in_token_revoked_code")
	if r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, fresh["token"])); r.status != 200 {
		t.Errorf("new token: %d %s", r.status, r.raw)
	}
}
