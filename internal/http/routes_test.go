package http_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/userdir"
)

func TestCreate(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.signInURL = "https://app.example.com/sign-in?lang=en" })
	now := b.clock.Now()
	cases := []struct {
		name        string
		path, body  string
		contentType string
		wantTTL     time.Duration
		wantOrg     any
	}{
		{"default expiry", "/v1/sign_in_tokens", `{"user_id":"user_1"}`, "application/json", 30 * 24 * time.Hour, nil},
		{"custom expiry", "/v1/sign_in_tokens", `{"user_id":"user_1","expires_in_seconds":3600}`, "application/json", time.Hour, nil},
		{"exponent integer", "/v1/sign_in_tokens", `{"user_id":"user_1","expires_in_seconds":3.6e3}`, "application/json", time.Hour, nil},
		{"org id", "/v1/sign_in_tokens", `{"user_id":"user_1","org_id":"org_9"}`, "application/json", 30 * 24 * time.Hour, "org_9"},
		{"unknown fields ignored", "/v1/sign_in_tokens", `{"user_id":"user_1","extra":{"a":[1,2]}}`, "application/json", 30 * 24 * time.Hour, nil},
		{"null fields as absent", "/v1/sign_in_tokens", `{"user_id":"user_1","expires_in_seconds":null,"org_id":null}`, "application/json", 30 * 24 * time.Hour, nil},
		{"without v1 prefix", "/sign_in_tokens", `{"user_id":"user_1"}`, "application/json", 30 * 24 * time.Hour, nil},
		{"trailing slash", "/v1/sign_in_tokens/", `{"user_id":"user_1"}`, "application/json", 30 * 24 * time.Hour, nil},
		{"form body", "/v1/sign_in_tokens", `user_id=user_1&expires_in_seconds=60`, "application/x-www-form-urlencoded", time.Minute, nil},
		{"json sent as form", "/v1/sign_in_tokens", `{"user_id":"user_1"}`, "application/x-www-form-urlencoded", 30 * 24 * time.Hour, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do("POST", tc.path, tc.body, "Content-Type", tc.contentType)
			if r.status != 200 {
				t.Fatalf("status: got %d, want 200: %s", r.status, r.raw)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type: got %q, want application/json", ct)
			}
			if r.header.Get("Clerk-Trace-Id") == "" {
				t.Error("Clerk-Trace-Id header missing")
			}
			o := r.body
			id, _ := o["id"].(string)
			if o["object"] != "sign_in_token" || !strings.HasPrefix(id, "sit_") || len(id) != 31 ||
				o["user_id"] != "user_1" || o["status"] != "pending" {
				t.Errorf("object: got %s", r.raw)
			}
			if o["org_id"] != tc.wantOrg {
				t.Errorf("org_id: got %v, want %v", o["org_id"], tc.wantOrg)
			}
			ms := float64(now.UnixMilli())
			if o["created_at"] != ms || o["updated_at"] != ms {
				t.Errorf("created_at, updated_at: got %v, %v, want %v", o["created_at"], o["updated_at"], ms)
			}
			if want := float64(now.Add(tc.wantTTL).UnixMilli()); o["expires_at"] != want {
				t.Errorf("expires_at: got %v, want %v", o["expires_at"], want)
			}
			ticket, _ := o["token"].(string)
			claims, err := b.ticketer.Verify(ticket)
			if err != nil {
				t.Fatalf("token does not verify: %v", err)
			}
			if claims.ID != id || claims.SessionID != id || claims.Subject != "user_1" || claims.Issuer != testIssuer ||
				claims.Type != "sign_in_token" || claims.ExpiresAt.Unix() != now.Add(tc.wantTTL).Unix() {
				t.Errorf("claims: got %+v", claims)
			}
			u, err := url.Parse(o["url"].(string))
			if err != nil || u.Host != "app.example.com" || u.Path != "/sign-in" ||
				u.Query().Get("__clerk_ticket") != ticket || u.Query().Get("lang") != "en" {
				t.Errorf("url: got %v", o["url"])
			}
		})
	}
}

func TestCreateWithoutSignInURLOmitsURL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.create(`{"user_id":"user_1"}`)
	if _, ok := o["url"]; ok {
		t.Errorf("url: got %v, want it omitted", o["url"])
	}
	if s, _ := o["token"].(string); s == "" {
		t.Error("token missing from create response")
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.create(`{"user_id":"user_1","org_id":"org_1"}`)
	id := created["id"].(string)

	// Read: no token, no url.
	for _, path := range []string{"/v1/sign_in_tokens/" + id, "/sign_in_tokens/" + id, "/v1/sign_in_tokens/" + id + "/"} {
		r := b.do("GET", path, "")
		if r.status != 200 || r.body["id"] != id || r.body["status"] != "pending" {
			t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
		}
		if _, ok := r.body["token"]; ok {
			t.Errorf("GET %s: token present", path)
		}
		if _, ok := r.body["url"]; ok {
			t.Errorf("GET %s: url present", path)
		}
	}

	// Redeem once: accepted, with user and org.
	b.clock.Advance(time.Second)
	r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, created["token"]))
	if r.status != 200 || r.body["status"] != "accepted" || r.body["user_id"] != "user_1" || r.body["org_id"] != "org_1" {
		t.Fatalf("redeem: %d %s", r.status, r.raw)
	}
	if _, ok := r.body["token"]; ok {
		t.Error("redeem response carries the token")
	}
	if want := float64(b.clock.Now().UnixMilli()); r.body["updated_at"] != want || r.body["accepted_at"] != want {
		t.Errorf("updated_at, accepted_at: got %v, %v, want %v", r.body["updated_at"], r.body["accepted_at"], want)
	}
	if r.body["created_at"] != created["created_at"] {
		t.Errorf("created_at changed: got %v, want %v", r.body["created_at"], created["created_at"])
	}
	b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, created["token"])).
		wantError(t, 400, "sign_in_token_already_used_code")

	// Form-encoded redeem works too.
	second := b.create(`{"user_id":"user_2"}`)
	r = b.do("POST", "/tickets/redeem", "ticket="+url.QueryEscape(second["token"].(string)),
		"Content-Type", "application/x-www-form-urlencoded")
	if r.status != 200 || r.body["status"] != "accepted" {
		t.Fatalf("form redeem: %d %s", r.status, r.raw)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, body := range []string{"", "null", "{}"} {
		t.Run("body "+body, func(t *testing.T) {
			o := b.create(`{"user_id":"user_1"}`)
			b.clock.Advance(time.Millisecond)
			r := b.do("POST", "/v1/sign_in_tokens/"+o["id"].(string)+"/revoke", body)
			if r.status != 200 || r.body["status"] != "revoked" || r.body["id"] != o["id"] {
				t.Fatalf("revoke: %d %s", r.status, r.raw)
			}
			if _, ok := r.body["token"]; ok {
				t.Error("revoke response carries the token")
			}
			if want := float64(b.clock.Now().UnixMilli()); r.body["updated_at"] != want || r.body["revoked_at"] != want {
				t.Errorf("updated_at, revoked_at: got %v, %v, want %v", r.body["updated_at"], r.body["revoked_at"], want)
			}
			b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, o["token"])).
				wantError(t, 400, "sign_in_token_revoked_code")
		})
	}
	t.Run("expired but pending", func(t *testing.T) {
		o := b.create(`{"user_id":"user_1","expires_in_seconds":1}`)
		b.clock.Advance(time.Hour)
		r := b.do("POST", "/sign_in_tokens/"+o["id"].(string)+"/revoke/", "")
		if r.status != 200 || r.body["status"] != "revoked" {
			t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []string
	for i := 0; i < 5; i++ {
		user := "user_a"
		if i%2 == 1 {
			user = "user_b"
		}
		ids = append(ids, b.create(fmt.Sprintf(`{"user_id":%q}`, user))["id"].(string))
		b.clock.Advance(time.Second)
	}
	b.do("POST", "/v1/sign_in_tokens/"+ids[0]+"/revoke", "")

	cases := []struct {
		query     string
		wantIDs   []int // indexes into ids, newest first
		wantTotal int
	}{
		{"", []int{4, 3, 2, 1, 0}, 5},
		{"?user_id=user_a", []int{4, 2, 0}, 3},
		{"?user_id=user_b&status=pending", []int{3, 1}, 2},
		{"?status=revoked", []int{0}, 1},
		{"?limit=2", []int{4, 3}, 5},
		{"?limit=2&offset=2", []int{2, 1}, 5},
		{"?offset=10", []int{}, 5},
		{"?user_id=nobody", []int{}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			r := b.do("GET", "/v1/sign_in_tokens"+tc.query, "")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.raw)
			}
			data, ok := r.body["data"].([]any)
			if !ok {
				t.Fatalf("data: got %v, want an array", r.body["data"])
			}
			var got []string
			for _, d := range data {
				obj := d.(map[string]any)
				if _, ok := obj["token"]; ok {
					t.Error("list item carries the token")
				}
				got = append(got, obj["id"].(string))
			}
			var want []string
			for _, i := range tc.wantIDs {
				want = append(want, ids[i])
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("ids: got %v, want %v", got, want)
			}
			if r.body["total_count"] != float64(tc.wantTotal) {
				t.Errorf("total_count: got %v, want %d", r.body["total_count"], tc.wantTotal)
			}
		})
	}
}

func TestAuthAcceptsEveryConfiguredKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, key := range []string{testKey, testKeyOther} {
		if r := b.do("GET", "/v1/sign_in_tokens", "", "Authorization", "Bearer "+key); r.status != 200 {
			t.Errorf("key %s…: status %d, want 200", key[:8], r.status)
		}
	}
	// Public routes need no key.
	for _, path := range []string{"/healthz", "/readyz", "/.well-known/jwks.json"} {
		if r := b.do("GET", path, "", "Authorization", ""); r.status != 200 {
			t.Errorf("GET %s: status %d, want 200", path, r.status)
		}
	}
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do("GET", "/.well-known/jwks.json", "", "Authorization", "")
	keys, _ := r.body["keys"].([]any)
	if r.status != 200 || len(keys) != 1 {
		t.Fatalf("jwks: %d %s", r.status, r.raw)
	}
	k := keys[0].(map[string]any)
	if x, _ := k["x"].(string); k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["kid"] != b.keys.Signer().ID || x == "" {
		t.Errorf("jwk: got %v", k)
	}
	if _, ok := k["d"]; ok {
		t.Fatal("jwks publishes the private key")
	}
}

// directory is a user directory that knows one user and fails for another.
func directory(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/users/user_known":
			w.Write([]byte(`{"id":"user_known"}`))
		case "/users/user_broken":
			w.WriteHeader(500)
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestUserDirectory(t *testing.T) {
	t.Parallel()
	dir, err := userdir.New(directory(t).URL+"/users/{user_id}", "Bearer directory-key")
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(o *options) { o.users = dir })
	if r := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_known"}`); r.status != 200 {
		t.Errorf("known user: status %d, want 200: %s", r.status, r.raw)
	}
	b.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_unknown"}`).wantError(t, 404, "resource_not_found")
	b.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_broken"}`).wantError(t, 502, "user_lookup_failed")
	r := b.do("GET", "/v1/sign_in_tokens", "")
	if r.body["total_count"] != float64(1) {
		t.Errorf("tokens stored: got %v, want 1 (only the known user's)", r.body["total_count"])
	}
}
