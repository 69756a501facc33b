package http_test

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestCreateRedirectURL: an allowed redirect_url is kept in normalised form,
// shown wherever the token is, and the url is built from it; any other is
// refused with 422 naming redirect_url, never dropped.
func TestCreateRedirectURL(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) {
		o.signInURL = "https://default.example.com/sign-in"
		o.redirects = []string{"https://app.example.com/auth"}
	})
	obj := b.create(`{"user_id":"user_1","redirect_url":"HTTPS://App.Example.com:443/auth/callback?lang=de"}`)
	const want = "https://app.example.com/auth/callback?lang=de"
	if obj["redirect_url"] != want {
		t.Errorf("redirect_url: got %v, want %s", obj["redirect_url"], want)
	}
	u, err := url.Parse(obj["url"].(string))
	if err != nil || u.Host != "app.example.com" || u.Path != "/auth/callback" ||
		u.Query().Get("lang") != "de" || u.Query().Get("__clerk_ticket") != obj["token"] {
		t.Errorf("url: got %v, want %s with __clerk_ticket added", obj["url"], want)
	}
	for op, r := range b.shown(obj, "user_1") {
		if r.status != 200 || r.body["redirect_url"] != want {
			t.Errorf("%s: got %d redirect_url %v, want 200 and %s", op, r.status, r.body["redirect_url"], want)
		}
	}

	for _, c := range []struct{ name, body string }{
		{"not allowed", `{"user_id":"u","redirect_url":"https://evil.example.com/auth"}`},
		{"userinfo", `{"user_id":"u","redirect_url":"https://app.example.com@evil.example.com/auth"}`},
		{"path boundary", `{"user_id":"u","redirect_url":"https://app.example.com/authority"}`},
		{"javascript", `{"user_id":"u","redirect_url":"javascript:alert(document.cookie)"}`},
		{"scheme-relative", `{"user_id":"u","redirect_url":"//app.example.com/auth"}`},
		{"encoded dot segments", `{"user_id":"u","redirect_url":"https://app.example.com/auth/%2e%2e/admin"}`},
		{"too long", `{"user_id":"u","redirect_url":"https://app.example.com/auth/` + strings.Repeat("a", 2100) + `"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := b.do("POST", "/v1/sign_in_tokens", c.body)
			r.wantError(t, 422, "form_param_value_invalid")
			if got := r.meta()["param_name"]; got != "redirect_url" {
				t.Errorf("param_name: got %v, want redirect_url", got)
			}
		})
	}
	r := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"u","redirect_url":["https://app.example.com/auth"]}`)
	r.wantError(t, 422, "form_param_type_invalid")
	if got := r.meta()["param_name"]; got != "redirect_url" {
		t.Errorf("param_name: got %v, want redirect_url", got)
	}
}

// TestCreateRedirectURLNoneAllowed: without ALLOWED_REDIRECT_URLS every
// redirect_url is refused.
func TestCreateRedirectURLNoneAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.signInURL = "https://app.example.com/sign-in" })
	r := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"u","redirect_url":"https://app.example.com/sign-in"}`)
	r.wantError(t, 422, "form_param_value_invalid")
	if got := r.meta()["param_name"]; got != "redirect_url" {
		t.Errorf("param_name: got %v, want redirect_url", got)
	}
}

// TestCreateURLChoice: the url is the hosted page when PUBLIC_URL is set,
// else the redirect_url, else SIGN_IN_URL, each with the ticket.
func TestCreateURLChoice(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		hosted    bool
		signIn    string
		redirect  string
		wantStart string // "" means no url; "PUBLIC" the test server's /sign-in
	}{
		{"redirect, no sign-in page", false, "", "https://app.example.com/cb", "https://app.example.com/cb?__clerk_ticket="},
		{"redirect over SIGN_IN_URL", false, "https://default.example.com/in", "https://app.example.com/cb", "https://app.example.com/cb?__clerk_ticket="},
		{"SIGN_IN_URL", false, "https://default.example.com/in", "", "https://default.example.com/in?__clerk_ticket="},
		{"nothing", false, "", "", ""},
		{"hosted over redirect", true, "", "https://app.example.com/cb", "PUBLIC"},
		{"hosted over SIGN_IN_URL", true, "https://default.example.com/in", "", "PUBLIC"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *options) {
				o.hosted, o.signInURL, o.redirects = c.hosted, c.signIn, []string{"https://app.example.com/"}
			})
			body := `{"user_id":"u"}`
			if c.redirect != "" {
				body = `{"user_id":"u","redirect_url":"` + c.redirect + `"}`
			}
			obj := b.create(body)
			want := strings.Replace(c.wantStart, "PUBLIC", b.srv.URL+"/sign-in?__clerk_ticket=", 1)
			got, _ := obj["url"].(string)
			if want == "" && got != "" || want != "" && got != want+obj["token"].(string) {
				t.Errorf("url: got %q, want %q followed by the ticket", got, want)
			}
		})
	}
}

// TestCreateMetadata: a JSON object is kept and shown on get, list, verify
// and redeem, never in the ticket; anything else is refused with 422.
func TestCreateMetadata(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const meta = `{"locale":"de-CH","next":"/billing","n":[1,2.5,null,true],"deep":{"a":{"b":"<\u00e9>"}}}`
	var want any
	json.Unmarshal([]byte(meta), &want)
	obj := b.create(`{"user_id":"user_m", "metadata" : ` + meta + `}`)
	if !reflect.DeepEqual(obj["metadata"], want) {
		t.Errorf("create: metadata got %v, want %v", obj["metadata"], want)
	}
	if claims := decodeClaims(t, obj["token"].(string)); claims["metadata"] != nil || strings.Contains(obj["token"].(string), "billing") {
		t.Errorf("the ticket carries metadata: %v", claims)
	}
	for op, r := range b.shown(obj, "user_m") {
		if r.status != 200 || !reflect.DeepEqual(r.body["metadata"], want) {
			t.Errorf("%s: got %d metadata %v, want 200 and %v", op, r.status, r.body["metadata"], want)
		}
	}
	// Without metadata there is no metadata field.
	if plain := b.create(`{"user_id":"u","metadata":null}`); plain["metadata"] != nil {
		t.Errorf("metadata null: got %v, want the field left out", plain["metadata"])
	}
	// A form carries it as JSON text.
	form := b.do("POST", "/v1/sign_in_tokens", "user_id=u&metadata="+url.QueryEscape(`{"a":1}`),
		"Content-Type", "application/x-www-form-urlencoded")
	if m, _ := form.body["metadata"].(map[string]any); form.status != 200 || m["a"] != 1.0 {
		t.Errorf("form metadata: got %d %s, want 200 with metadata {a: 1}", form.status, form.raw)
	}

	big := `{"k":"` + strings.Repeat("x", 4096) + `"}`
	for _, c := range []struct {
		name, body, contentType string
		code                    string
	}{
		{"string", `{"user_id":"u","metadata":"{\"a\":1}"}`, "", "form_param_type_invalid"},
		{"array", `{"user_id":"u","metadata":[1,2]}`, "", "form_param_type_invalid"},
		{"number", `{"user_id":"u","metadata":12}`, "", "form_param_type_invalid"},
		{"bool", `{"user_id":"u","metadata":true}`, "", "form_param_type_invalid"},
		{"form, not JSON", "user_id=u&metadata=locale%3Dde", "application/x-www-form-urlencoded", "form_param_type_invalid"},
		{"form, array", "user_id=u&metadata=%5B1%5D", "application/x-www-form-urlencoded", "form_param_type_invalid"},
		{"too large", `{"user_id":"u","metadata":` + big + `}`, "", "form_param_value_invalid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var headers []string
			if c.contentType != "" {
				headers = []string{"Content-Type", c.contentType}
			}
			r := b.do("POST", "/v1/sign_in_tokens", c.body, headers...)
			r.wantError(t, 422, c.code)
			if got := r.meta()["param_name"]; got != "metadata" {
				t.Errorf("param_name: got %v, want metadata", got)
			}
		})
	}
	// Invalid JSON inside metadata makes the body invalid JSON.
	b.do("POST", "/v1/sign_in_tokens", `{"user_id":"u","metadata":{"a":}}`).wantError(t, 400, "request_body_invalid")
	// Exactly 4 KiB encoded is accepted.
	exact := `{"k":"` + strings.Repeat("x", 4096-8) + `"}`
	if r := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"u","metadata":`+exact+`}`); r.status != 200 {
		t.Errorf("metadata of 4096 bytes: got %d %s, want 200", r.status, r.raw)
	}
}

// TestCreateIdempotentMetadata: a retry must send the same redirect_url and
// metadata; other ones are another request.
func TestCreateIdempotentMetadata(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.redirects = []string{"https://app.example.com/"} })
	first := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"u","metadata":{"a":1}}`, "Idempotency-Key", "k1")
	again := b.do("POST", "/v1/sign_in_tokens", `{"user_id":"u", "metadata":{ "a": 1 }}`, "Idempotency-Key", "k1")
	if first.status != 200 || again.status != 200 || first.body["id"] != again.body["id"] {
		t.Errorf("retry: got %d %v and %d %v, want the same token twice", first.status, first.body["id"], again.status, again.body["id"])
	}
	b.do("POST", "/v1/sign_in_tokens", `{"user_id":"u","metadata":{"a":2}}`, "Idempotency-Key", "k1").
		wantError(t, 422, "idempotency_key_reused")
	b.do("POST", "/v1/sign_in_tokens", `{"user_id":"u","metadata":{"a":1},"redirect_url":"https://app.example.com/x"}`, "Idempotency-Key", "k1").
		wantError(t, 422, "idempotency_key_reused")
}

// decodeClaims returns a JWT's claims, unverified.
func decodeClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// shown is the created token obj as get, list (of userID's, its only
// token), verify and then redeem show it.
func (b *bundle) shown(obj map[string]any, userID string) map[string]response {
	b.t.Helper()
	id := obj["id"].(string)
	shown := map[string]response{
		"get":    b.do("GET", "/v1/sign_in_tokens/"+id, ""),
		"verify": b.do("POST", "/v1/tickets/verify", ticketBody(obj)),
		"redeem": b.do("POST", "/v1/tickets/redeem", ticketBody(obj)),
	}
	list := b.do("GET", "/v1/sign_in_tokens?user_id="+url.QueryEscape(userID), "")
	if data, _ := list.body["data"].([]any); len(data) == 1 {
		shown["list"] = response{status: list.status, body: data[0].(map[string]any)}
	} else {
		b.t.Errorf("list of %s: got %s, want one token", userID, list.raw)
	}
	return shown
}
