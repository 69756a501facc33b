package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts a headless Chromium for t, with a fresh profile and its
// background connections off (the network here refuses them), and returns
// a tab to drive. Without Chromium the test is skipped, or fails under
// CI=true.
func browser(t *testing.T) tab {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (fails under CI=true)", args...)
	}
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		unavailable("no Chromium found (apt-get install -y chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		unavailable("cannot start Chromium at %s: %v", path, err)
	}
	return tab{t: t, ctx: ctx, dir: screenshotDir(t)}
}

// tab drives one browser tab; every step that fails ends the test.
type tab struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go
}

func (b tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// text is the visible text of the element with the id.
func (b tab) text(id string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		b.t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

// evaluate runs a JavaScript expression in the tab's page.
func evaluate[T any](b tab, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot saves the whole page as name.png in the screenshot directory.
func (b tab) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// screenshotDir is where the page's screenshots go for a reviewer:
// SCREENSHOT_DIR, else testdata/out/sign-in (ignored by git).
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "out", "sign-in")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// application is a test application: its /callback redeems the ticket it
// is sent through the API and answers 200 "Signed in as <user>".
type application struct {
	*httptest.Server
	mu      sync.Mutex
	redeems []int // statuses of the redemptions it sent
	api     *bundle
}

func newApplication(t *testing.T) *application {
	app := &application{}
	mux := http.NewServeMux() // only /callback: Chromium also asks for /favicon.ico
	app.Server = httptest.NewServer(mux)
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		ticket := r.URL.Query().Get("__clerk_ticket")
		body, _ := json.Marshal(map[string]string{"ticket": ticket})
		req, _ := http.NewRequest("POST", app.api.srv.URL+"/v1/tickets/redeem", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		var tok map[string]any
		json.NewDecoder(resp.Body).Decode(&tok)
		app.mu.Lock()
		app.redeems = append(app.redeems, resp.StatusCode)
		app.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if resp.StatusCode != 200 {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `<h1 id="refused">Sign-in refused: %d</h1>`, resp.StatusCode)
			return
		}
		fmt.Fprintf(w, `<!doctype html><title>App</title><h1 id="signed-in">Signed in as %s</h1>`, html.EscapeString(fmt.Sprint(tok["user_id"])))
	})
	t.Cleanup(app.Close)
	return app
}

// TestSignInPageInBrowser opens a link as a mail delivers it in a real
// Chromium, checks the page, presses Continue and lands on the application,
// which redeems the ticket with 200. Loading the page without pressing
// Continue leaves the token pending. Each page state is saved as a
// screenshot.
func TestSignInPageInBrowser(t *testing.T) {
	br := browser(t)
	t.Logf("screenshots in %s", br.dir)
	app := newApplication(t)
	b := pageSetup(t, func(o *options) { o.redirects = []string{app.URL + "/"} })
	app.api = b

	tok := b.create(`{"user_id":"user_browser","redirect_url":"` + app.URL + `/callback"}`)
	link := tok["url"].(string)
	br.do("open "+link, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("continue")))
	br.screenshot("good")
	if heading, user, host := br.text("heading"), br.text("user"), br.text("host"); heading != "Continue signing in" ||
		user != "user_browser" || host != "127.0.0.1" {
		t.Errorf("page: heading %q, user %q, host %q; want Continue signing in, user_browser, 127.0.0.1", heading, user, host)
	}
	// Chromium loaded the page, as a scanner with a browser would: nothing used.
	if r := b.do("GET", "/v1/sign_in_tokens/"+tok["id"].(string), ""); r.body["status"] != "pending" {
		t.Fatalf("after loading the page: status %v, want pending", r.body["status"])
	}

	br.do("press Continue", chromedp.Click(chromedp.ID("continue")), chromedp.WaitVisible(chromedp.ID("signed-in")))
	br.screenshot("continued")
	if got := br.text("signed-in"); got != "Signed in as user_browser" {
		t.Errorf("application page: got %q, want Signed in as user_browser", got)
	}
	app.mu.Lock()
	if len(app.redeems) != 1 || app.redeems[0] != 200 {
		t.Errorf("application's redemptions: got %v, want one 200", app.redeems)
	}
	app.mu.Unlock()

	// The other states: the redeemed token's link again, an expired, a
	// revoked and an invalid one.
	revoked := b.create(`{"user_id":"user_r","redirect_url":"` + app.URL + `/callback"}`)
	b.mustStatus(b.do("POST", "/v1/sign_in_tokens/"+revoked["id"].(string)+"/revoke", ""), 200)
	expired := b.create(`{"user_id":"user_e","expires_in_seconds":1,"redirect_url":"` + app.URL + `/callback"}`)
	b.clock.Advance(2 * time.Second)
	for _, c := range []struct{ name, link, heading string }{
		{"used", link, "This sign-in link was already used"},
		{"expired", expired["url"].(string), "This sign-in link has expired"},
		{"revoked", revoked["url"].(string), "This sign-in link was cancelled"},
		{"invalid", b.srv.URL + "/sign-in?__clerk_ticket=eyJhbGciOiJFZERTQSJ9.broken.link", "This sign-in link is not valid"},
	} {
		br.do(c.name, chromedp.Navigate(c.link), chromedp.WaitVisible(chromedp.ID("message")))
		br.screenshot(c.name)
		heading, next := br.text("heading"), br.text("next")
		if buttons := evaluate[int](br, `document.querySelectorAll("button, form").length`); heading != c.heading || next == "" || buttons != 0 {
			t.Errorf("%s: heading %q, next %q, %d buttons; want %q, what to do, and no button", c.name, heading, next, buttons, c.heading)
		}
	}

	// A phone: the page fits the viewport, the button spans the card.
	phone := b.create(`{"user_id":"user_phone@example.com","redirect_url":"` + app.URL + `/callback"}`)
	br.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(phone["url"].(string)), chromedp.WaitVisible(chromedp.ID("continue")))
	br.screenshot("phone")
	fits := evaluate[bool](br, `document.documentElement.scrollWidth <= window.innerWidth`)
	width := evaluate[float64](br, `document.getElementById("continue").getBoundingClientRect().width`)
	if !fits || width < 250 || width > 390 {
		t.Errorf("phone: fits %v, button %.0f px wide; want no horizontal scroll and a button across the card", fits, width)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if len(app.redeems) != 1 {
		t.Errorf("application's redemptions: got %v, want only the one Continue", app.redeems)
	}
}
