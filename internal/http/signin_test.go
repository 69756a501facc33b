package http_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// pageSetup is a server with the hosted sign-in page, whose tokens go on to
// https://app.example.com unless they carry a redirect_url.
func pageSetup(t *testing.T, opts ...func(*options)) *bundle {
	return setup(t, append([]func(*options){func(o *options) {
		o.hosted = true
		o.signInURL = "https://app.example.com/sign-in"
		o.redirects = []string{"https://app.example.com/", "https://other.example.com/finish"}
	}}, opts...)...)
}

// page sends an unauthenticated request as a browser or a scanner would,
// without following redirects, and keeps the body as it is.
func (b *bundle) page(method, path, body string) response {
	b.t.Helper()
	req := b.request(method, path, body)
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return b.roundTrip(&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, req)
}

// wantPageHeaders checks the headers every answer of the page carries.
func wantPageHeaders(t *testing.T, r response) {
	t.Helper()
	for name, want := range map[string]string{
		"Cache-Control":          "no-store",
		"Referrer-Policy":        "no-referrer",
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	csp := r.header.Get("Content-Security-Policy")
	for _, part := range []string{"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "style-src 'sha256-"} {
		if !strings.Contains(csp, part) {
			t.Errorf("Content-Security-Policy %q: want %q in it", csp, part)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q allows script or unsafe sources", csp)
	}
	if r.header.Get("Clerk-Trace-Id") == "" {
		t.Error("no Clerk-Trace-Id")
	}
}

// storedRows returns the stored tokens with the given ids, for comparing
// before and after.
func (b *bundle) storedRows(ids ...string) []tokens.Token {
	b.t.Helper()
	out := make([]tokens.Token, len(ids))
	for i, id := range ids {
		tok, err := b.store.Get(context.Background(), id)
		if err != nil {
			b.t.Fatal(err)
		}
		out[i] = tok
	}
	return out
}

func pagePath(ticket string) string { return "/sign-in?__clerk_ticket=" + url.QueryEscape(ticket) }

// TestSignInPage: a good ticket's page says who signs in where and offers a
// Continue button that posts the ticket; neither GET nor HEAD changes the
// token; the POST answers 303 to the application with the ticket and
// consumes nothing either.
func TestSignInPage(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	steps := map[string]int{}
	b := pageSetup(t, func(o *options) {
		o.pages = func(step string, err error) {
			mu.Lock()
			defer mu.Unlock()
			outcome := "ok"
			if err != nil {
				outcome = tokens.ErrorCode(err)
			}
			steps[step+":"+outcome]++
		}
	})
	obj := b.create(`{"user_id":"user_<page>"}`)
	ticket := obj["token"].(string)
	if want := b.srv.URL + "/sign-in?__clerk_ticket=" + ticket; obj["url"] != want {
		t.Fatalf("url: got %v, want %s", obj["url"], want)
	}
	before := b.storedRows(obj["id"].(string))

	r := b.page("GET", pagePath(ticket), "")
	if r.status != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET: got %d %q, want 200 text/html; charset=utf-8", r.status, r.header.Get("Content-Type"))
	}
	wantPageHeaders(t, r)
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://app.example.com;") {
		t.Errorf("Content-Security-Policy %q: want form-action limited to itself and the destination", csp)
	}
	body := string(r.raw)
	for _, want := range []string{`<html lang="en">`, `name="viewport"`, "user_&lt;page&gt;", `<strong id="host">app.example.com</strong>`,
		`<form method="post" action="` + b.srv.URL + `/sign-in">`, `name="ticket" value="` + ticket + `"`, ">Continue</button>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page: want %q in it:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "src=") || strings.Contains(body, "<link") {
		t.Errorf("page loads script or external assets:\n%s", body)
	}
	if h := b.page("HEAD", pagePath(ticket), ""); h.status != 200 || len(h.raw) != 0 {
		t.Errorf("HEAD: got %d with %d bytes, want 200 and no body", h.status, len(h.raw))
	}

	post := b.page("POST", "/sign-in", "ticket="+url.QueryEscape(ticket))
	wantPageHeaders(t, post)
	loc, err := url.Parse(post.header.Get("Location"))
	if post.status != http.StatusSeeOther || err != nil || loc.Host != "app.example.com" || loc.Path != "/sign-in" ||
		loc.Query().Get("__clerk_ticket") != ticket {
		t.Errorf("POST: got %d Location %q, want 303 to https://app.example.com/sign-in with the ticket", post.status, post.header.Get("Location"))
	}
	if after := b.storedRows(obj["id"].(string)); !reflect.DeepEqual(before, after) {
		t.Errorf("the page changed the token:\nbefore %+v\nafter  %+v", before, after)
	}
	mu.Lock()
	if !reflect.DeepEqual(steps, map[string]int{"view:ok": 2, "continue:ok": 1}) {
		t.Errorf("page observer: got %v, want 2 good views and 1 good continue", steps)
	}
	mu.Unlock()
	// The application redeems it, once.
	if red := b.do("POST", "/v1/tickets/redeem", ticketBody(obj)); red.status != 200 {
		t.Errorf("redeem after the page: got %d %s, want 200", red.status, red.raw)
	}
}

// TestSignInPageRedirectURL: the Continue button goes to the token's
// redirect_url, with its query kept and the ticket added.
func TestSignInPageRedirectURL(t *testing.T) {
	t.Parallel()
	b := pageSetup(t)
	obj := b.create(`{"user_id":"u","redirect_url":"https://other.example.com/finish?next=%2Fbilling"}`)
	ticket := obj["token"].(string)
	if r := b.page("GET", pagePath(ticket), ""); !strings.Contains(string(r.raw), `<strong id="host">other.example.com</strong>`) ||
		!strings.Contains(r.header.Get("Content-Security-Policy"), "form-action 'self' https://other.example.com;") {
		t.Errorf("page: got %d, CSP %q; want other.example.com as the destination", r.status, r.header.Get("Content-Security-Policy"))
	}
	post := b.page("POST", "/sign-in", "ticket="+url.QueryEscape(ticket))
	loc, _ := url.Parse(post.header.Get("Location"))
	if post.status != 303 || loc == nil || loc.Host != "other.example.com" || loc.Path != "/finish" ||
		loc.Query().Get("next") != "/billing" || loc.Query().Get("__clerk_ticket") != ticket {
		t.Errorf("POST: got %d Location %q, want 303 to the redirect_url with next and the ticket", post.status, post.header.Get("Location"))
	}
}

// TestSignInPageRefusals: each ticket a redeem would refuse gets a page
// saying so and what to do, with a 4xx status, on GET, HEAD and POST alike;
// a POST never redirects.
func TestSignInPageRefusals(t *testing.T) {
	t.Parallel()
	b := pageSetup(t)
	used := b.create(`{"user_id":"u"}`)
	b.mustStatus(b.do("POST", "/v1/tickets/redeem", ticketBody(used)), 200)
	revoked := b.create(`{"user_id":"u"}`)
	b.mustStatus(b.do("POST", "/v1/sign_in_tokens/"+revoked["id"].(string)+"/revoke", ""), 200)
	expired := b.create(`{"user_id":"u","expires_in_seconds":5}`)
	b.clock.Advance(time.Minute)
	good := b.create(`{"user_id":"u"}`)
	for _, c := range []struct {
		name, ticket string
		status       int
		say          string
	}{
		{"expired", expired["token"].(string), 410, "has expired"},
		{"used", used["token"].(string), 410, "already used"},
		{"revoked", revoked["token"].(string), 410, "was cancelled"},
		{"invalid", "not.a.ticket", 400, "is not valid"},
		{"tampered", good["token"].(string)[:len(good["token"].(string))-4] + "AAAA", 400, "is not valid"},
		{"missing", "", 400, "is not valid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := "/sign-in"
			if c.ticket != "" {
				path = pagePath(c.ticket)
			}
			for _, r := range []response{b.page("GET", path, ""), b.page("POST", "/sign-in", "ticket="+url.QueryEscape(c.ticket))} {
				if r.status != c.status || r.header.Get("Location") != "" {
					t.Errorf("got %d Location %q, want %d and no redirect", r.status, r.header.Get("Location"), c.status)
				}
				wantPageHeaders(t, r)
				if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'none'") {
					t.Errorf("Content-Security-Policy %q: want form-action 'none' on a refusal", csp)
				}
				if body := string(r.raw); !strings.Contains(body, c.say) || !strings.Contains(body, `id="next"`) || strings.Contains(body, "<form") {
					t.Errorf("page: want %q and what to do next, and no form:\n%s", c.say, body)
				}
			}
			if h := b.page("HEAD", path, ""); h.status != c.status || len(h.raw) != 0 {
				t.Errorf("HEAD: got %d with %d bytes, want %d and no body", h.status, len(h.raw), c.status)
			}
		})
	}
	// A body that is no form is refused with a page too.
	if r := b.page("POST", "/sign-in", "%zz"); r.status != 400 || !strings.Contains(string(r.raw), "is not valid") {
		t.Errorf("POST of a broken form: got %d %s, want a 400 page", r.status, r.raw)
	}
}

// TestSignInPageNoDestination: a good ticket with neither a redirect_url nor
// SIGN_IN_URL has nowhere to go: a 409 page, no button, no redirect.
func TestSignInPageNoDestination(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.hosted = true })
	ticket := b.create(`{"user_id":"u"}`)["token"].(string)
	for _, r := range []response{b.page("GET", pagePath(ticket), ""), b.page("POST", "/sign-in", "ticket="+url.QueryEscape(ticket))} {
		if r.status != 409 || r.header.Get("Location") != "" || strings.Contains(string(r.raw), "<form") ||
			!strings.Contains(string(r.raw), "nowhere to go") {
			t.Errorf("got %d Location %q, want a 409 page:\n%s", r.status, r.header.Get("Location"), r.raw)
		}
	}
}

// TestSignInPageOnlyWithPublicURL: without PUBLIC_URL there is no page.
func TestSignInPageOnlyWithPublicURL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.page("GET", "/sign-in?__clerk_ticket=x", "")
	if r.status != 404 || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /sign-in without PUBLIC_URL: got %d %q, want 404 JSON", r.status, r.header.Get("Content-Type"))
	}
}

// TestSignInPageRateLimited: the page shares redeem's per-address limit.
func TestSignInPageRateLimited(t *testing.T) {
	t.Parallel()
	b := pageSetup(t, func(o *options) { o.limits = apihttp.RateLimits{RedeemPerAddress: 2} })
	ticket := b.create(`{"user_id":"u"}`)["token"].(string)
	b.page("GET", pagePath(ticket), "")
	b.page("POST", "/sign-in", "ticket="+url.QueryEscape(ticket))
	r := b.page("GET", pagePath(ticket), "")
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Errorf("third request: got %d Retry-After %q, want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
}

// TestSignInPageLogsNoTicket: the request log lines of the page, GET with
// the ticket in the query and POST with it in the body, hold no part of it.
func TestSignInPageLogsNoTicket(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	b := pageSetup(t, func(o *options) { o.logs = logs })
	ticket := b.create(`{"user_id":"u"}`)["token"].(string)
	b.page("GET", pagePath(ticket), "")
	b.page("HEAD", pagePath(ticket), "")
	b.page("POST", "/sign-in", "ticket="+url.QueryEscape(ticket))
	b.page("GET", pagePath(ticket+"x"), "") // refused: logged all the same
	out := logs.String()
	if n := strings.Count(out, `"route":"/sign-in"`); n != 4 {
		t.Fatalf("want 4 request lines for /sign-in, got %d:\n%s", n, out)
	}
	// No 12 consecutive characters of the ticket, in any of its three parts.
	for i := 0; i+12 <= len(ticket); i++ {
		if part := ticket[i : i+12]; strings.Contains(out, part) {
			t.Fatalf("the log holds %q, part of the ticket:\n%s", part, out)
		}
	}
	if strings.Contains(out, "__clerk_ticket") {
		t.Errorf("the log holds the query:\n%s", out)
	}
}

// TestMailScannersBurnNothing simulates what mail scanners do with a link
// before the person sees it: a plain GET, a HEAD, prefetches that follow
// redirects and that do not, with and without the prefetch headers, several
// times over. Every token stays pending, its row unchanged, and a redeem
// afterwards still succeeds. (TestSignInPageInBrowser checks the same for
// Chromium loading the page.)
func TestMailScannersBurnNothing(t *testing.T) {
	t.Parallel()
	b := pageSetup(t)
	var ids []string
	var links []string
	for _, body := range []string{`{"user_id":"u1"}`, `{"user_id":"u2","redirect_url":"https://other.example.com/finish"}`} {
		obj := b.create(body)
		ids, links = append(ids, obj["id"].(string)), append(links, obj["url"].(string))
	}
	before := b.storedRows(ids...)
	follow := &http.Client{} // follows redirects, as a crawler does
	stay := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, link := range links {
		for _, s := range []struct {
			method string
			client *http.Client
			header map[string]string
		}{
			{"GET", follow, nil},
			{"HEAD", follow, nil},
			{"GET", stay, nil},
			{"GET", follow, map[string]string{"Purpose": "prefetch", "Sec-Purpose": "prefetch"}},
			{"GET", stay, map[string]string{"Sec-Purpose": "prefetch;prerender", "User-Agent": "Mozilla/5.0 (compatible; SafeLinks)"}},
			{"HEAD", stay, map[string]string{"X-Moz": "prefetch"}},
		} {
			for range 3 {
				req, _ := http.NewRequest(s.method, link, nil)
				for k, v := range s.header {
					req.Header.Set(k, v)
				}
				resp, err := s.client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", s.method, link, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("%s %s: got %d, want 200", s.method, link, resp.StatusCode)
				}
			}
		}
	}
	if after := b.storedRows(ids...); !reflect.DeepEqual(before, after) {
		t.Fatalf("the scanners changed tokens:\nbefore %+v\nafter  %+v", before, after)
	}
	for _, tok := range b.storedRows(ids...) {
		if tok.Status != tokens.StatusPending {
			t.Errorf("%s: status %s, want pending", tok.ID, tok.Status)
		}
	}
}

// TestSignInPageNamesTheActor: an actor token's page says that it is an
// impersonation link and who acts; a sign-in token's page says nothing of
// the kind.
func TestSignInPageNamesTheActor(t *testing.T) {
	t.Parallel()
	b := pageSetup(t)
	act := b.do("POST", "/v1/actor_tokens", `{"user_id":"user_customer","actor":{"sub":"user_<support>"}}`)
	if act.status != 200 {
		t.Fatalf("create actor token: %d %s", act.status, act.raw)
	}
	r := b.page("GET", pagePath(act.body["token"].(string)), "")
	if r.status != 200 || !strings.Contains(string(r.raw), `id="actor"`) || !strings.Contains(string(r.raw), "user_&lt;support&gt;") {
		t.Errorf("actor token's page: %d, want it to name the actor:\n%s", r.status, r.raw)
	}
	plain := b.create(`{"user_id":"user_customer"}`)
	if r := b.page("GET", pagePath(plain["token"].(string)), ""); r.status != 200 || strings.Contains(string(r.raw), `id="actor"`) {
		t.Errorf("sign-in token's page: %d, want no actor:\n%s", r.status, r.raw)
	}
}
