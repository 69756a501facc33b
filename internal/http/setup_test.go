package http_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/store"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Keys every test server accepts.
const (
	testKey      = "sk_test_0123456789abcdefghij"
	testKeyOther = "sk_test_rotated_9876543210zyx"
	testIssuer   = "https://tokens.test"
)

// clock is a settable time source shared by the service and the ticketer.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// bundle is what a test needs: a real HTTP server on the real router, backed
// by a real database of its own (see testDatabase).
type bundle struct {
	t        *testing.T
	srv      *httptest.Server
	store    tokens.Store
	keys     *tokens.KeySet
	ticketer *tokens.Ticketer
	clock    *clock
}

// The stores the HTTP tests can run on; HTTP_TEST_STORE picks one.
const (
	storePostgres = "postgres"
	storeSQLite   = "sqlite"
)

// testStore is the store every HTTP test runs on: HTTP_TEST_STORE if set;
// otherwise PostgreSQL at TEST_DATABASE_URL when it answers, or under CI
// (where pgtest then fails the test rather than let it pass on another
// store), and SQLite when it does not, so the suite runs on a laptop
// without PostgreSQL. make test runs the package once more on SQLite.
var testStore = sync.OnceValues(func() (string, error) {
	switch v := os.Getenv("HTTP_TEST_STORE"); v {
	case storePostgres, storeSQLite:
		return v, nil
	case "":
	default:
		return "", fmt.Errorf("HTTP_TEST_STORE: want postgres, sqlite or nothing, got %q", v)
	}
	if os.Getenv("CI") == "true" {
		return storePostgres, nil
	}
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = pgtest.DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		fmt.Fprintf(os.Stderr, "internal/http: PostgreSQL unreachable (%v); the tests run on SQLite\n", err)
		return storeSQLite, nil
	}
	conn.Close(ctx)
	return storePostgres, nil
})

// storeUnderTest is testStore, or the end of t.
func storeUnderTest(t *testing.T) string {
	t.Helper()
	kind, err := testStore()
	if err != nil {
		t.Fatal(err)
	}
	return kind
}

// testDatabase returns a new, empty database for t on the store under test:
// a PostgreSQL schema of its own, or a SQLite file in t's temporary directory.
func testDatabase(t *testing.T) string {
	t.Helper()
	if storeUnderTest(t) == storeSQLite {
		return "sqlite:" + filepath.Join(t.TempDir(), "tokens.db")
	}
	return pgtest.URL(t)
}

// postgresURL is testDatabase for the tests about PostgreSQL itself (its row
// locks, say); they are skipped when the store under test is SQLite.
func postgresURL(t *testing.T) string {
	t.Helper()
	if storeUnderTest(t) == storeSQLite {
		t.Skip("a PostgreSQL test; the store under test is SQLite")
	}
	return pgtest.URL(t)
}

type options struct {
	signInURL string
	users     tokens.UserDirectory
	limits    apihttp.RateLimits
	keys      []ed25519.PrivateKey            // default: one new key
	dbURL     string                          // default: testDatabase(t)
	timeout   time.Duration                   // request timeout; default the server's
	logs      io.Writer                       // default: discarded
	wrap      func(tokens.Store) tokens.Store // stands between the service and the store
	maxExpiry time.Duration                   // largest expires_in_seconds; default 365 days
	hosted    bool                            // PUBLIC_URL is the test server's own URL
	redirects []string                        // ALLOWED_REDIRECT_URLS
	observer  tokens.Observer                 // told of the service's changes; default none
	pages     apihttp.PageObserver            // told of the sign-in page's steps; default none
}

func setup(t *testing.T, opts ...func(*options)) *bundle {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	ctx := context.Background()
	if o.dbURL == "" {
		o.dbURL = testDatabase(t)
	}
	if o.logs == nil {
		o.logs = io.Discard
	}
	if o.keys == nil {
		o.keys = []ed25519.PrivateKey{tokens.GenerateKey()}
	}
	if o.maxExpiry == 0 {
		o.maxExpiry = 365 * 24 * time.Hour
	}
	st, _, err := store.Open(ctx, o.dbURL, store.Options{Writers: postgres.DefaultWriters})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := tokens.NewKeySet(o.keys...)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	ticketer := tokens.NewTicketer(keys, testIssuer, clk.Now)
	var serviceStore tokens.Store = st
	if o.wrap != nil {
		serviceStore = o.wrap(st)
	}
	codes, err := tokens.NewCodes([]byte("the HTTP tests' code secret, 32 bytes or more"))
	if err != nil {
		t.Fatal(err)
	}
	redirects, err := tokens.NewRedirectPolicy(o.redirects)
	if err != nil {
		t.Fatal(err)
	}
	svc := tokens.NewService(tokens.Config{
		Store: serviceStore, Ticketer: ticketer, Codes: codes, Users: o.users, Now: clk.Now,
		DefaultExpiresIn: min(30*24*time.Hour, o.maxExpiry), MaxExpiresIn: o.maxExpiry,
		Redirects: redirects, Observer: o.observer,
	})
	var signIn *url.URL
	if o.signInURL != "" {
		signIn, _ = url.Parse(o.signInURL)
	}
	srv := httptest.NewUnstartedServer(nil)
	var public *url.URL
	if o.hosted {
		public = &url.URL{Scheme: "http", Host: srv.Listener.Addr().String()}
	}
	api := apihttp.NewServer(apihttp.Config{
		Service: svc, SecretKeys: []string{testKey, testKeyOther}, SignInURL: signIn, PublicURL: public,
		Logger: zerolog.New(o.logs), RateLimits: o.limits, RequestTimeout: o.timeout, PageObserver: o.pages,
	})
	srv.Config.Handler = validating(t, api)
	srv.Start()
	t.Cleanup(srv.Close)
	return &bundle{t: t, srv: srv, store: st, keys: keys, ticketer: ticketer, clock: clk}
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// do sends a request with the test key and JSON content type unless headers
// say otherwise; a header set to "" is removed.
func (b *bundle) do(method, path, body string, headers ...string) response {
	b.t.Helper()
	req := b.request(method, path, body)
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	r := b.roundTrip(b.srv.Client(), req)
	if len(r.raw) > 0 {
		if err := json.Unmarshal(r.raw, &r.body); err != nil {
			b.t.Fatalf("%s %s: body is not a JSON object: %v: %s", method, path, err, r.raw)
		}
	}
	return r
}

// request is a request to the test server, without headers.
func (b *bundle) request(method, path, body string) *http.Request {
	b.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	return req
}

// roundTrip sends req with client and reads the whole answer.
func (b *bundle) roundTrip(client *http.Client, req *http.Request) response {
	b.t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, raw: raw}
}

// create makes a token and returns its object, failing the test otherwise.
func (b *bundle) create(body string) map[string]any {
	b.t.Helper()
	r := b.do("POST", "/v1/sign_in_tokens", body)
	if r.status != 200 {
		b.t.Fatalf("create %s: status %d: %s", body, r.status, r.raw)
	}
	return r.body
}

// wantError asserts status, code and the contract's error shape.
func (r response) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status: got %d, want %d (body %s)", r.status, status, r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
	errs, _ := r.body["errors"].([]any)
	if len(errs) != 1 {
		t.Fatalf("errors: got %v, want one item (body %s)", r.body["errors"], r.raw)
	}
	item, _ := errs[0].(map[string]any)
	if item["code"] != code {
		t.Errorf("code: got %v, want %s", item["code"], code)
	}
	for _, f := range []string{"message", "long_message"} {
		if s, _ := item[f].(string); s == "" {
			t.Errorf("%s: got %v, want a non-empty string", f, item[f])
		}
	}
	trace := r.header.Get("Clerk-Trace-Id")
	if trace == "" || r.body["clerk_trace_id"] != trace {
		t.Errorf("clerk_trace_id: got %v, want the Clerk-Trace-Id header %q", r.body["clerk_trace_id"], trace)
	}
}

// meta returns the first error's meta.
func (r response) meta() map[string]any {
	errs, _ := r.body["errors"].([]any)
	if len(errs) == 0 {
		return nil
	}
	item, _ := errs[0].(map[string]any)
	m, _ := item["meta"].(map[string]any)
	return m
}

// code returns the first error's code, or "".
func (r response) code() string {
	errs, _ := r.body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	item, _ := errs[0].(map[string]any)
	code, _ := item["code"].(string)
	return code
}
