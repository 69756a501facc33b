package http_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// snapshot is every stored token as the API shows it, to prove a request
// changed nothing.
func (b *bundle) snapshot() []byte {
	b.t.Helper()
	r := b.do("GET", "/v1/sign_in_tokens?limit=500", "")
	if r.status != 200 {
		b.t.Fatalf("list: %d %s", r.status, r.raw)
	}
	return r.raw
}

func (b *bundle) wantUnchanged(before []byte) {
	b.t.Helper()
	if after := b.snapshot(); !bytes.Equal(before, after) {
		b.t.Errorf("stored tokens changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestHostileTicketsWriteNothing sends forged tickets through the API: each is
// refused as invalid and leaves every stored token as it was.
func TestHostileTicketsWriteNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	issued := b.create(`{"user_id":"user_1","expires_in_seconds":3600}`)
	id := issued["id"].(string)
	signer := b.keys.Signer()
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		now := b.clock.Now()
		c := jwt.MapClaims{"iss": testIssuer, "sub": "user_1", "jti": id, "sid": id, "st": "sign_in_token",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if change != nil {
			change(c)
		}
		return c
	}
	signWith := func(method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
		jt := jwt.NewWithClaims(method, c)
		if kid != "" {
			jt.Header["kid"] = kid
		}
		s, err := jt.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	parts := strings.Split(issued["token"].(string), ".")
	cases := []struct{ name, ticket string }{
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."},
		{"HS256 with the public key", signWith(jwt.SigningMethodHS256, []byte(signer.Public), signer.ID, claims(nil))},
		{"another Ed25519 key", signWith(jwt.SigningMethodEdDSA, tokens.GenerateKey(), signer.ID, claims(nil))},
		{"tampered payload", parts[0] + "." + flipChar(parts[1], 20) + "." + parts[2]},
		{"wrong iss", signWith(jwt.SigningMethodEdDSA, signer.Private, signer.ID, claims(func(c jwt.MapClaims) { c["iss"] = "x" }))},
		// Our key, the stored token's id, but not the ticket that was issued:
		// only the stored hash tells it apart.
		{"our key, not the issued ticket", signWith(jwt.SigningMethodEdDSA, signer.Private, signer.ID,
			claims(func(c jwt.MapClaims) { c["exp"] = b.clock.Now().Add(2 * time.Hour).Unix() }))},
		{"1 MB of dots", strings.Repeat(".", 1<<20)},
	}
	before := b.snapshot()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"ticket":%q}`, tc.ticket)
			r := b.do("POST", "/v1/tickets/redeem", body)
			if len(body) > apihttp.DefaultMaxBodyBytes {
				r.wantError(t, 413, "request_body_too_large")
			} else {
				r.wantError(t, 400, "ticket_invalid_code")
			}
			b.wantUnchanged(before)
		})
	}
	// The issued ticket still redeems: nothing above consumed it.
	if r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, issued["token"])); r.status != 200 {
		t.Fatalf("the issued ticket: %d %s", r.status, r.raw)
	}
}

// flipChar changes the base64url character at i to another valid one.
func flipChar(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// TestBadRequests: malformed requests get their contract status and code,
// never a 5xx, and leave stored tokens as they were.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	existing := b.create(`{"user_id":"user_1"}`)
	id := existing["id"].(string)
	nested := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	cases := []struct {
		name, method, path, body, contentType string
		status                                int
		code, param                           string
	}{
		{"text/plain body", "POST", "/v1/sign_in_tokens", "user_id=u", "text/plain", 400, "request_body_invalid", ""},
		{"xml body", "POST", "/v1/sign_in_tokens", "<user_id>u</user_id>", "application/xml", 400, "request_body_invalid", ""},
		{"json array", "POST", "/v1/sign_in_tokens", `[{"user_id":"u"}]`, "application/json", 400, "request_body_invalid", ""},
		{"json string", "POST", "/v1/sign_in_tokens", `"user_id"`, "application/json", 400, "request_body_invalid", ""},
		{"trailing garbage", "POST", "/v1/sign_in_tokens", `{"user_id":"u"} {}`, "application/json", 400, "request_body_invalid", ""},
		{"invalid utf-8", "POST", "/v1/sign_in_tokens", "{\"user_id\":\"\xff\xfe\"}", "application/json", 400, "request_body_invalid", ""},
		{"deeply nested", "POST", "/v1/sign_in_tokens", `{"user_id":"u","x":` + nested + `}`, "application/json", 400, "request_body_invalid", ""},
		{"huge body", "POST", "/v1/sign_in_tokens", `{"user_id":"u","pad":"` + strings.Repeat("x", 1<<20) + `"}`, "application/json", 413, "request_body_too_large", ""},
		{"bad form escape", "POST", "/v1/sign_in_tokens", "user_id=%zz", "application/x-www-form-urlencoded", 400, "request_body_invalid", ""},
		{"user_id number", "POST", "/v1/sign_in_tokens", `{"user_id":42}`, "application/json", 422, "form_param_type_invalid", "user_id"},
		{"user_id bool", "POST", "/v1/sign_in_tokens", `{"user_id":true}`, "application/json", 422, "form_param_type_invalid", "user_id"},
		{"user_id object", "POST", "/v1/sign_in_tokens", `{"user_id":{"$ne":null}}`, "application/json", 422, "form_param_type_invalid", "user_id"},
		{"user_id too long", "POST", "/v1/sign_in_tokens", `{"user_id":"` + strings.Repeat("u", 300) + `"}`, "application/json", 422, "form_param_value_invalid", "user_id"},
		{"org_id array", "POST", "/v1/sign_in_tokens", `{"user_id":"u","org_id":["o"]}`, "application/json", 422, "form_param_type_invalid", "org_id"},
		{"expiry fraction", "POST", "/v1/sign_in_tokens", `{"user_id":"u","expires_in_seconds":1.5}`, "application/json", 422, "form_param_type_invalid", "expires_in_seconds"},
		{"expiry negative", "POST", "/v1/sign_in_tokens", `{"user_id":"u","expires_in_seconds":-60}`, "application/json", 422, "form_param_value_invalid", "expires_in_seconds"},
		{"expiry beyond int64", "POST", "/v1/sign_in_tokens", `{"user_id":"u","expires_in_seconds":99999999999999999999999}`, "application/json", 422, "form_param_value_invalid", "expires_in_seconds"},
		{"expiry beyond float64", "POST", "/v1/sign_in_tokens", `{"user_id":"u","expires_in_seconds":1e400}`, "application/json", 422, "form_param_value_invalid", "expires_in_seconds"},
		{"expiry bool", "POST", "/v1/sign_in_tokens", `{"user_id":"u","expires_in_seconds":false}`, "application/json", 422, "form_param_type_invalid", "expires_in_seconds"},
		{"expiry form text", "POST", "/v1/sign_in_tokens", "user_id=u&expires_in_seconds=soon", "application/x-www-form-urlencoded", 422, "form_param_type_invalid", "expires_in_seconds"},
		{"ticket number", "POST", "/v1/tickets/redeem", `{"ticket":12345}`, "application/json", 422, "form_param_type_invalid", "ticket"},
		{"ticket null", "POST", "/v1/tickets/redeem", `{"ticket":null}`, "application/json", 422, "form_param_missing", "ticket"},
		{"redeem empty body", "POST", "/v1/tickets/redeem", "", "application/json", 422, "form_param_missing", "ticket"},
		{"id with SQL", "GET", "/v1/sign_in_tokens/sit_'%20OR%20'1'='1", "", "", 404, "resource_not_found", ""},
		{"id with SQL revoke", "POST", "/v1/sign_in_tokens/x';DELETE%20FROM%20sign_in_tokens;--/revoke", "", "", 404, "resource_not_found", ""},
		{"id with encoded slash", "GET", "/v1/sign_in_tokens/..%2F..%2Fetc%2Fpasswd", "", "", 404, "resource_not_found", ""},
		{"id with percent", "POST", "/v1/sign_in_tokens/" + id + "%25/revoke", "", "", 404, "resource_not_found", ""},
		{"id far too long", "GET", "/v1/sign_in_tokens/sit_" + strings.Repeat("a", 5000), "", "", 404, "resource_not_found", ""},
		{"list limit text", "GET", "/v1/sign_in_tokens?limit=ten", "", "", 422, "form_param_value_invalid", "limit"},
		{"list limit zero", "GET", "/v1/sign_in_tokens?limit=0", "", "", 422, "form_param_value_invalid", "limit"},
		{"list offset huge", "GET", "/v1/sign_in_tokens?offset=99999999999999999999", "", "", 422, "form_param_value_invalid", "offset"},
		{"list status case", "GET", "/v1/sign_in_tokens?status=PENDING", "", "", 422, "form_param_value_invalid", "status"},
		{"redeem by GET", "GET", "/v1/tickets/redeem?ticket=" + existing["token"].(string), "", "", 405, "request_method_not_allowed", ""},
		{"redeem by HEAD", "HEAD", "/v1/tickets/redeem", "", "", 405, "", ""},
		{"revoke by GET", "GET", "/v1/sign_in_tokens/" + id + "/revoke", "", "", 405, "request_method_not_allowed", ""},
		{"delete token", "DELETE", "/v1/sign_in_tokens/" + id, "", "", 405, "request_method_not_allowed", ""},
		{"put collection", "PUT", "/sign_in_tokens", `{"user_id":"u"}`, "application/json", 405, "request_method_not_allowed", ""},
		{"unknown route", "POST", "/v2/sign_in_tokens", `{"user_id":"u"}`, "application/json", 404, "resource_not_found", ""},
		{"unknown nested route", "GET", "/v1/sign_in_tokens/" + id + "/ticket", "", "", 404, "resource_not_found", ""},
	}
	before := b.snapshot()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(tc.method, tc.path, tc.body, "Content-Type", tc.contentType)
			if tc.method == "HEAD" {
				if r.status != tc.status {
					t.Errorf("status: got %d, want %d", r.status, tc.status)
				}
			} else {
				r.wantError(t, tc.status, tc.code)
				if tc.status == 405 && r.header.Get("Allow") == "" {
					t.Error("405 without an Allow header")
				}
				if got := r.meta()["param_name"]; tc.param != "" && got != tc.param {
					t.Errorf("meta.param_name: got %v, want %s", got, tc.param)
				}
			}
			b.wantUnchanged(before)
		})
	}
}

func TestMethodNotAllowedListsAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for path, want := range map[string]string{
		"/v1/tickets/redeem":          "POST",
		"/sign_in_tokens/":            "GET, POST",
		"/v1/sign_in_tokens/sit_x":    "GET",
		"/v1/sign_in_tokens/x/revoke": "POST",
	} {
		r := b.do("PATCH", path, "")
		r.wantError(t, 405, "request_method_not_allowed")
		if got := r.header.Get("Allow"); got != want {
			t.Errorf("PATCH %s: Allow %q, want %q", path, got, want)
		}
	}
}

func TestIdempotentCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := "Idempotency-Key"
	first := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_1","expires_in_seconds":600}`, key, "order-42")
	b.clock.Advance(5 * time.Second)
	retry := b.do("POST", "/v1/sign_in_tokens", `{"expires_in_seconds":600,"user_id":"user_1"}`, key, "order-42")
	if first.status != 200 || retry.status != 200 {
		t.Fatalf("statuses: got %d and %d, want 200: %s %s", first.status, retry.status, first.raw, retry.raw)
	}
	for _, f := range []string{"id", "token", "created_at", "expires_at"} {
		if first.body[f] != retry.body[f] || first.body[f] == nil {
			t.Errorf("%s: retry gave %v, want %v", f, retry.body[f], first.body[f])
		}
	}
	b.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_2","expires_in_seconds":600}`, key, "order-42").
		wantError(t, 422, "idempotency_key_reused")
	b.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_1"}`, key, strings.Repeat("k", 256)).
		wantError(t, 422, "form_param_value_invalid")
	if r := b.do("GET", "/v1/sign_in_tokens", ""); r.body["total_count"] != float64(1) {
		t.Errorf("tokens stored: got %v, want 1", r.body["total_count"])
	}
	// The retried ticket is the real one: it redeems.
	if r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, retry.body["token"])); r.status != 200 {
		t.Errorf("redeem of the retried ticket: %d %s", r.status, r.raw)
	}
	// After 24 hours the key is free again and gives a new token.
	b.clock.Advance(24*time.Hour + time.Second)
	later := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_1","expires_in_seconds":600}`, key, "order-42")
	if later.status != 200 || later.body["id"] == first.body["id"] {
		t.Errorf("after 24h: got %d id %v, want a new token", later.status, later.body["id"])
	}
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.limits = apihttp.RateLimits{RedeemPerAddress: 3, AdminPerKey: 8} })
	for i := 0; i < 3; i++ {
		if r := b.do("POST", "/v1/tickets/redeem", `{"ticket":"x.y.z"}`); r.status != 400 {
			t.Fatalf("redeem %d: status %d, want 400", i+1, r.status)
		}
	}
	r := b.do("POST", "/v1/tickets/redeem", `{"ticket":"x.y.z"}`)
	r.wantError(t, 429, "too_many_requests")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Admin calls: the 4 redeems above (the refused one too) counted for this
	// key as well; 4 more reach its 8.
	for i := 0; i < 4; i++ {
		if r := b.do("GET", "/v1/sign_in_tokens", ""); r.status != 200 {
			t.Fatalf("admin call %d: status %d, want 200", i+1, r.status)
		}
	}
	b.do("GET", "/v1/sign_in_tokens", "").wantError(t, 429, "too_many_requests")
	// Another key has a budget of its own.
	if r := b.do("GET", "/v1/sign_in_tokens", "", "Authorization", "Bearer "+testKeyOther); r.status != 200 {
		t.Errorf("other key: status %d, want 200", r.status)
	}
}

// TestRateLimitTrustedProxies: behind a trusted proxy, each address in
// X-Forwarded-For has a budget of its own; without one, the header is
// ignored and every request counts for the peer.
func TestRateLimitTrustedProxies(t *testing.T) {
	t.Parallel()
	redeem := func(b *bundle, from string) response {
		return b.do("POST", "/v1/tickets/redeem", `{"ticket":"x.y.z"}`, "X-Forwarded-For", from)
	}
	behind := setup(t, func(o *options) {
		o.limits = apihttp.RateLimits{RedeemPerAddress: 2, TrustedProxies: []string{"127.0.0.1/32", "::1/128"}}
	})
	for i := 0; i < 2; i++ {
		if r := redeem(behind, "203.0.113.1"); r.status != 400 {
			t.Fatalf("redeem %d from 203.0.113.1: status %d, want 400", i+1, r.status)
		}
	}
	redeem(behind, "203.0.113.1").wantError(t, 429, "too_many_requests")
	if r := redeem(behind, "203.0.113.2"); r.status != 400 {
		t.Errorf("redeem from 203.0.113.2 behind a trusted proxy: status %d, want 400 (a budget of its own)", r.status)
	}

	direct := setup(t, func(o *options) { o.limits = apihttp.RateLimits{RedeemPerAddress: 2} })
	for i, from := range []string{"203.0.113.1", "203.0.113.2"} {
		if r := redeem(direct, from); r.status != 400 {
			t.Fatalf("redeem %d without a trusted proxy: status %d, want 400", i+1, r.status)
		}
	}
	redeem(direct, "203.0.113.3").wantError(t, 429, "too_many_requests")
}

// TestKeyRotationThroughTheAPI: a ticket issued under the old key redeems on a
// server whose key set puts a new key first, and not once the old key is gone.
func TestKeyRotationThroughTheAPI(t *testing.T) {
	t.Parallel()
	dbURL := testDatabase(t)
	oldKey, newKey := tokens.GenerateKey(), tokens.GenerateKey()
	withKeys := func(keys ...ed25519.PrivateKey) func(*options) {
		return func(o *options) { o.keys, o.dbURL = keys, dbURL }
	}
	before := setup(t, withKeys(oldKey))
	a := before.create(`{"user_id":"user_a"}`)
	c := before.create(`{"user_id":"user_c"}`)

	during := setup(t, withKeys(newKey, oldKey))
	if r := during.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, a["token"])); r.status != 200 {
		t.Errorf("old ticket during rotation: %d %s", r.status, r.raw)
	}
	fresh := during.create(`{"user_id":"user_b"}`)
	if claims, err := during.ticketer.Verify(fresh["token"].(string)); err != nil || strings.Split(fresh["token"].(string), ".")[0] == strings.Split(a["token"].(string), ".")[0] {
		t.Errorf("new ticket: claims %v, err %v; want it signed by the new key", claims, err)
	}

	after := setup(t, withKeys(newKey))
	after.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, c["token"])).wantError(t, 400, "ticket_invalid_code")
	if r := after.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, fresh["token"])); r.status != 200 {
		t.Errorf("new ticket after rotation: %d %s", r.status, r.raw)
	}
}
