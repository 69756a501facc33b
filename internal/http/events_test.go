package http_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
)

// events reads GET /v1/events with the query q.
func (b *bundle) events(q string) response {
	b.t.Helper()
	return b.do("GET", "/v1/events?"+q, "")
}

// waitEvents waits until the log shows at least n events and returns them:
// PostgreSQL shows an event once every older transaction on the server has
// ended, which tests running in parallel delay for a moment.
func (b *bundle) waitEvents(n int) []map[string]any {
	b.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r := b.events("limit=500")
		if r.status != 200 {
			b.t.Fatalf("GET /v1/events: %d %s", r.status, r.raw)
		}
		data := eventData(r)
		if len(data) >= n || time.Now().After(deadline) {
			return data
		}
	}
}

func eventData(r response) []map[string]any {
	var out []map[string]any
	list, _ := r.body["data"].([]any)
	for _, e := range list {
		obj, _ := e.(map[string]any)
		out = append(out, obj)
	}
	return out
}

func eventSummary(list []map[string]any) string {
	var lines []string
	for _, e := range list {
		data, _ := e["data"].(map[string]any)
		line := fmt.Sprintf("%v %v %v", e["type"], data["id"], data["status"])
		if code, ok := e["error_code"]; ok {
			line += fmt.Sprintf(" %v", code)
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// TestEvents: each change through the API appears once in the log, with
// the token as the change left it, the key's fingerprint, the client's
// address as the rate limiter sees it, the user agent and the request's
// trace id; never a ticket or a code; refusals only for stored tokens.
func TestEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) {
		o.limits = apihttp.RateLimits{TrustedProxies: []string{"127.0.0.0/8", "::1/128"}}
	})
	headers := []string{"X-Forwarded-For", "198.51.100.9", "User-Agent", "events-test/1"}
	post := func(path, body string) response {
		t.Helper()
		r := b.do("POST", path, body, headers...)
		return r
	}
	created := post("/v1/sign_in_tokens", `{"user_id":"user_ev","code_length":6}`)
	if created.status != 200 {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	ticket, code := created.body["token"].(string), created.body["code"].(string)
	id := created.body["id"].(string)
	other := b.create(`{"user_id":"user_ev2"}`)
	actor := post("/v1/actor_tokens", `{"user_id":"user_ev","actor":{"sub":"user_admin"}}`)
	if actor.status != 200 {
		t.Fatalf("create actor token: %d %s", actor.status, actor.raw)
	}
	redeem := post("/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, ticket))
	if redeem.status != 200 {
		t.Fatalf("redeem: %d %s", redeem.status, redeem.raw)
	}
	post("/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, ticket)).wantError(t, 400, "sign_in_token_already_used_code")
	post("/v1/tickets/redeem", `{"ticket":"garbage.garbage.garbage"}`)                                          // not recorded
	post("/v1/sign_in_tokens/sit_0000000000000000000000000/revoke", "").wantError(t, 404, "resource_not_found") // nothing changed
	if r := post("/v1/sign_in_tokens/"+other["id"].(string)+"/revoke", ""); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}

	want := strings.Join([]string{
		"sign_in_token.created " + id + " pending",
		"sign_in_token.created " + other["id"].(string) + " pending",
		"actor_token.created " + actor.body["id"].(string) + " pending",
		"sign_in_token.accepted " + id + " accepted",
		"sign_in_token.redeem_refused " + id + " accepted sign_in_token_already_used_code",
		"sign_in_token.revoked " + other["id"].(string) + " revoked",
	}, "\n")
	list := b.waitEvents(6)
	if got := eventSummary(list); got != want {
		t.Fatalf("events:\n%s\nwant\n%s", got, want)
	}
	sum := sha256.Sum256([]byte(testKey))
	fingerprint := hex.EncodeToString(sum[:4])
	wantContext := map[int]map[string]any{
		0: {"key": fingerprint, "ip": "198.51.100.9", "user_agent": "events-test/1", "trace_id": created.header.Get("Clerk-Trace-Id")},
		3: {"key": fingerprint, "ip": "198.51.100.9", "user_agent": "events-test/1", "trace_id": redeem.header.Get("Clerk-Trace-Id")},
	}
	for i, wc := range wantContext {
		got, _ := list[i]["context"].(map[string]any)
		if fmt.Sprint(got) != fmt.Sprint(wc) {
			t.Errorf("event %d context: got %v, want %v", i, got, wc)
		}
	}
	// A trusted proxy that sends no X-Forwarded-For names no client: the
	// limiter fails closed, and the trail records no address.
	if got, _ := list[1]["context"].(map[string]any); got["ip"] != "" {
		t.Errorf("event of a trusted peer's request without X-Forwarded-For: ip %v, want none", got["ip"])
	}
	all := b.events("limit=500")
	for _, secret := range []string{ticket, code, `"token"`, `"code"`, `"url"`} {
		if strings.Contains(string(all.raw), secret) {
			t.Errorf("the events' JSON holds %s: %s", secret, all.raw)
		}
	}
	if list[3]["object"] != "event" || !strings.HasPrefix(fmt.Sprint(list[3]["id"]), "evt_") {
		t.Errorf("event shape: %v", list[3])
	}
	data, _ := list[3]["data"].(map[string]any)
	if data["accepted_at"] != redeem.body["accepted_at"] || list[3]["created_at"] != redeem.body["accepted_at"] {
		t.Errorf("accepted event: data.accepted_at %v, created_at %v; want %v", data["accepted_at"], list[3]["created_at"], redeem.body["accepted_at"])
	}

	// Filters, and paging with after and limit.
	cases := []struct {
		query string
		want  []int
		more  bool
	}{
		{"type=sign_in_token.created", []int{0, 1}, false},
		{"type=actor_token.created", []int{2}, false},
		{"user_id=user_ev2", []int{1, 5}, false},
		{"user_id=user_ev&type=sign_in_token.accepted", []int{3}, false},
		{"limit=2", []int{0, 1}, true},
		{"limit=6", []int{0, 1, 2, 3, 4, 5}, false},
		{"after=" + fmt.Sprint(list[1]["id"]) + "&limit=3", []int{2, 3, 4}, true},
		{"after=" + fmt.Sprint(list[2]["id"]), []int{3, 4, 5}, false},
		{"after=" + fmt.Sprint(list[5]["id"]), nil, false},
		{"after=" + fmt.Sprint(list[0]["id"]) + "&user_id=user_ev2", []int{1, 5}, false},
		{"type=sign_in_token.code_failed", nil, false},
	}
	for _, tc := range cases {
		r := b.events(tc.query)
		if r.status != 200 {
			t.Errorf("%s: %d %s", tc.query, r.status, r.raw)
			continue
		}
		var want []map[string]any
		for _, i := range tc.want {
			want = append(want, list[i])
		}
		if got := eventSummary(eventData(r)); got != eventSummary(want) {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.query, got, eventSummary(want))
		}
		if r.body["has_more"] != tc.more {
			t.Errorf("%s: has_more %v, want %v", tc.query, r.body["has_more"], tc.more)
		}
	}

	// A wrong code is recorded against the user's coded tokens; this one is
	// accepted already, so nothing is counted and nothing recorded.
	b.redeemCode("user_ev", "000000")
	if r := b.events("type=sign_in_token.code_failed"); len(eventData(r)) != 0 {
		t.Errorf("code_failed without a pending coded token: %s", r.raw)
	}
}

// TestEventsCodeFailed: a wrong code is recorded as code_failed for the
// token it was counted against, and the right one as accepted.
func TestEventsCodeFailed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.create(`{"user_id":"user_code","code_length":6}`)
	code := created["code"].(string)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	b.redeemCode("user_code", wrong, "X-Forwarded-For", "198.51.100.9").wantError(t, 422, "form_code_incorrect")
	if r := b.redeemCode("user_code", code); r.status != 200 {
		t.Fatalf("redeem code: %d %s", r.status, r.raw)
	}
	id := created["id"].(string)
	want := strings.Join([]string{
		"sign_in_token.created " + id + " pending",
		"sign_in_token.code_failed " + id + " pending",
		"sign_in_token.accepted " + id + " accepted",
	}, "\n")
	list := b.waitEvents(3)
	if got := eventSummary(list); got != want {
		t.Errorf("events:\n%s\nwant\n%s", got, want)
	}
	// Without TRUSTED_PROXIES, X-Forwarded-For is ignored: the peer is the client.
	if len(list) == 3 {
		if got, _ := list[1]["context"].(map[string]any); got["ip"] != "127.0.0.1" {
			t.Errorf("code_failed event's ip: got %v, want the peer 127.0.0.1", got["ip"])
		}
	}
	all := b.events("")
	if strings.Contains(string(all.raw), code) {
		t.Errorf("the events' JSON holds the code: %s", all.raw)
	}
}

// TestEventsErrors: every bad parameter is a 422 naming it; no key, 401.
func TestEventsErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct{ query, param string }{
		{"limit=0", "limit"},
		{"limit=501", "limit"},
		{"limit=ten", "limit"},
		{"after=evt_nope", "after"},
		{"after=sit_0000000000000000000000000", "after"},
		{"type=sign_in_token.exploded", "type"},
		{"type=user.created", "type"},
		{"user_id=" + strings.Repeat("u", 257), "user_id"},
	} {
		r := b.events(tc.query)
		r.wantError(t, 422, "form_param_value_invalid")
		if got := r.meta()["param_name"]; got != tc.param {
			t.Errorf("%s: param_name %v, want %s", tc.query, got, tc.param)
		}
	}
	b.do("GET", "/v1/events", "", "Authorization", "").wantError(t, 401, "clerk_key_invalid")
	if r := b.do("GET", "/events?limit=1", ""); r.status != 200 {
		t.Errorf("GET /events: %d %s", r.status, r.raw)
	}
}
