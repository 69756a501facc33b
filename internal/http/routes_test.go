package http_test

import (
	"encoding/json"
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

// TestRepeatedSlashes: paths with doubled slashes, as Clerk's PHP SDK sends
// them when its server URL ends in a slash, answer as the clean paths do and
// are routed (and so logged and counted) under the clean route pattern.
// Paths that are unknown once cleaned stay 404 and 405.
func TestRepeatedSlashes(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	b := setup(t, func(o *options) { o.logs = logs })
	lastRoute := func() any {
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		var line map[string]any
		json.Unmarshal([]byte(lines[len(lines)-1]), &line)
		return line["route"]
	}
	for _, prefix := range []string{"/", "/v1/", "//", "/v1//", "//v1//", "///v1///"} {
		t.Run(prefix, func(t *testing.T) {
			user := "user_" + strings.NewReplacer("/", "s").Replace(prefix)
			steps := []struct {
				name, method, path, body string
				want                     map[string]any // fields of the answer
				route                    string
			}{
				{"create", "POST", "sign_in_tokens", fmt.Sprintf(`{"user_id":%q}`, user),
					map[string]any{"status": "pending", "user_id": user}, "/sign_in_tokens"},
				{"get", "GET", "sign_in_tokens/{id}", "", map[string]any{"status": "pending"}, "/sign_in_tokens/{id}"},
				{"list", "GET", "sign_in_tokens?user_id=" + user, "", map[string]any{"total_count": float64(1)}, "/sign_in_tokens"},
				{"redeem", "POST", "tickets/redeem", `{"ticket":"{ticket}"}`, map[string]any{"status": "accepted"}, "/tickets/redeem"},
				{"create again", "POST", "sign_in_tokens/", fmt.Sprintf(`{"user_id":%q}`, user),
					map[string]any{"status": "pending"}, "/sign_in_tokens"},
				{"revoke", "POST", "sign_in_tokens//{id}//revoke/", "", map[string]any{"status": "revoked"}, "/sign_in_tokens/{id}/revoke"},
			}
			var id, ticket string
			for _, s := range steps {
				fill := strings.NewReplacer("{id}", id, "{ticket}", ticket)
				r := b.do(s.method, prefix+fill.Replace(s.path), fill.Replace(s.body))
				if r.status != 200 {
					t.Fatalf("%s %s: got %d %s, want 200", s.name, prefix+fill.Replace(s.path), r.status, r.raw)
				}
				for k, v := range s.want {
					if r.body[k] != v {
						t.Errorf("%s: %s got %v, want %v", s.name, k, r.body[k], v)
					}
				}
				if s.method == "POST" && strings.HasPrefix(s.path, "sign_in_tokens") && !strings.Contains(s.path, "revoke") {
					id, _ = r.body["id"].(string)
					ticket, _ = r.body["token"].(string)
				}
				wantRoute := s.route
				if strings.HasPrefix(strings.TrimLeft(prefix, "/"), "v1") {
					wantRoute = "/v1" + s.route
				}
				if got := lastRoute(); got != wantRoute {
					t.Errorf("%s: logged route %v, want %s", s.name, got, wantRoute)
				}
			}
		})
	}
	t.Run("unknown paths", func(t *testing.T) {
		for _, tc := range []struct{ method, path, clean string }{
			{"GET", "//nothing_here", "/nothing_here"},
			{"GET", "/v1//sign_in_tokens/sit_x/y", "/v1/sign_in_tokens/sit_x/y"},
			{"DELETE", "/v1//sign_in_tokens", "/v1/sign_in_tokens"},
			{"GET", "//tickets//redeem", "/tickets/redeem"},
		} {
			want := b.do(tc.method, tc.clean, "")
			wantRoute := lastRoute()
			got := b.do(tc.method, tc.path, "")
			got.wantError(t, want.status, want.code())
			if want.status != 404 && want.status != 405 {
				t.Errorf("%s %s: got %d, want 404 or 405", tc.method, tc.clean, want.status)
			}
			if g, w := got.header.Get("Allow"), want.header.Get("Allow"); g != w {
				t.Errorf("%s %s: Allow %q, want %q as for %s", tc.method, tc.path, g, w, tc.clean)
			}
			if g := lastRoute(); g != wantRoute {
				t.Errorf("%s %s: logged route %v, want %v as for %s", tc.method, tc.path, g, wantRoute, tc.clean)
			}
		}
	})
}

// TestPHPSDKRequests sends what Clerk's PHP SDK (clerkinc/backend-php) sends:
// expires_in_seconds 2592000 on every create unless the caller passes null,
// and a revoke with no body and no Content-Type.
func TestPHPSDKRequests(t *testing.T) {
	t.Parallel()
	php := []string{"Accept", "application/json", "User-Agent", "speakeasy-sdk/php 1.0.1 2.918.3 2026-05-12 clerkinc/backend-php"}
	b := setup(t)
	for _, path := range []string{"/v1/sign_in_tokens", "/v1//sign_in_tokens", "//sign_in_tokens"} {
		r := b.do("POST", path, `{"user_id":"user_php","expires_in_seconds":2592000}`, php...)
		if r.status != 200 || r.body["status"] != "pending" {
			t.Fatalf("create on %s: got %d %s, want 200 pending", path, r.status, r.raw)
		}
		if want := float64(b.clock.Now().Add(30 * 24 * time.Hour).UnixMilli()); r.body["expires_at"] != want {
			t.Errorf("expires_at: got %v, want %v (30 days)", r.body["expires_at"], want)
		}
		revoke := strings.Replace(path, "sign_in_tokens", "sign_in_tokens/"+r.body["id"].(string)+"/revoke", 1)
		r = b.do("POST", revoke, "", append(php, "Content-Type", "")...)
		if r.status != 200 || r.body["status"] != "revoked" {
			t.Fatalf("revoke on %s without body or Content-Type: got %d %s, want 200 revoked", revoke, r.status, r.raw)
		}
	}

	// A maximum below 30 days refuses the SDK's default create.
	short := setup(t, func(o *options) { o.maxExpiry = 7 * 24 * time.Hour })
	r := short.do("POST", "/v1/sign_in_tokens", `{"user_id":"user_php","expires_in_seconds":2592000}`, php...)
	r.wantError(t, 422, "form_param_value_invalid")
	if r.meta()["param_name"] != "expires_in_seconds" {
		t.Errorf("param_name: got %v, want expires_in_seconds", r.meta()["param_name"])
	}
}
