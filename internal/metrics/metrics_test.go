package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/metrics"
	"github.com/signin-tokens/signin-tokens/internal/store"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

const testKey = "sk_test_metrics_0123456789"

// bundle is a real API on a real PostgreSQL schema with metrics wired in as
// the server binary wires them.
type bundle struct {
	t        *testing.T
	srv      *httptest.Server
	ticketer *tokens.Ticketer
	now      func() time.Time
	skew     *atomic.Int64 // nanoseconds added to the start time
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	st, _, err := store.Open(ctx, pgtest.URL(t), store.Options{Writers: postgres.DefaultWriters})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	gate := store.NewGate()
	gate.Open(st)
	t.Cleanup(func() { gate.Close() })
	keys, err := tokens.NewKeySet(tokens.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	start, skew := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), new(atomic.Int64)
	now := func() time.Time { return start.Add(time.Duration(skew.Load())) }
	ticketer := tokens.NewTicketer(keys, "https://tokens.test", now)
	m := metrics.New()
	m.WatchPool(gate)
	svc := tokens.NewService(tokens.Config{Store: gate, Ticketer: ticketer, Now: now, Observer: m,
		DefaultExpiresIn: time.Hour, MaxExpiresIn: 24 * time.Hour})
	srv := httptest.NewUnstartedServer(nil)
	signIn, _ := url.Parse("https://app.example.com/sign-in")
	srv.Config.Handler = apihttp.NewServer(apihttp.Config{
		Service: svc, SecretKeys: []string{testKey}, Logger: zerolog.New(io.Discard),
		Observer: m.ObserveRequest, Extra: map[string]http.Handler{"/metrics": m.Handler()},
		PublicURL: &url.URL{Scheme: "http", Host: srv.Listener.Addr().String()}, SignInURL: signIn,
		PageObserver: m.SignInPage,
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return &bundle{t: t, srv: srv, ticketer: ticketer, now: now, skew: skew}
}

// do sends an authenticated request and returns the status and body.
func (b *bundle) do(method, path, body string, headers ...string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// create makes a token and returns its id and ticket.
func (b *bundle) create(body string, headers ...string) (id, ticket string) {
	b.t.Helper()
	status, raw := b.do("POST", "/v1/sign_in_tokens", body, headers...)
	if status != 200 {
		b.t.Fatalf("create: %d %s", status, raw)
	}
	return field(raw, "id"), field(raw, "token")
}

// field pulls one string field out of a flat JSON object.
func field(raw, name string) string {
	_, rest, ok := strings.Cut(raw, `"`+name+`":"`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// scrape reads /metrics and returns every sample as "name{label="value",...}"
// (labels sorted) → value; histograms give their _count and _sum.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[name+key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name+key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[name+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+key] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func TestScrapeAfterTraffic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	redeem := func(ticket string) int {
		status, _ := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, ticket))
		return status
	}

	// Five tokens created; the idempotent retry creates nothing.
	_, accepted := b.create(`{"user_id":"user_1"}`)
	revokedID, revoked := b.create(`{"user_id":"user_2"}`)
	_, expiring := b.create(`{"user_id":"user_3","expires_in_seconds":60}`)
	b.create(`{"user_id":"user_4"}`, "Idempotency-Key", "k1")
	b.create(`{"user_id":"user_4"}`, "Idempotency-Key", "k1")
	b.create(`{"user_id":"user_5"}`)
	unstored, err := b.ticketer.Sign(tokens.Token{ID: tokens.KindSignIn.NewID(time.Now()), UserID: "user_6",
		CreatedAt: b.now(), ExpiresAt: b.now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name   string
		do     func() int
		status int
	}{
		{"redeem", func() int { return redeem(accepted) }, 200},
		{"redeem again", func() int { return redeem(accepted) }, 400},
		{"revoke", func() int { s, _ := b.do("POST", "/v1/sign_in_tokens/"+revokedID+"/revoke", ""); return s }, 200},
		{"revoke again", func() int { s, _ := b.do("POST", "/sign_in_tokens/"+revokedID+"/revoke", ""); return s }, 400},
		{"redeem revoked", func() int { return redeem(revoked) }, 400},
		{"redeem garbage", func() int { return redeem("not.a.jwt") }, 400},
		{"redeem garbage again", func() int { return redeem("eyJ.eyJ.sig") }, 400},
		{"redeem unstored", func() int { return redeem(unstored) }, 400},
		{"redeem missing", func() int { s, _ := b.do("POST", "/v1/tickets/redeem", `{}`); return s }, 422},
		{"redeem expired", func() int { b.skew.Add(int64(2 * time.Minute)); return redeem(expiring) }, 400},
		{"get", func() int { s, _ := b.do("GET", "/v1/sign_in_tokens/"+revokedID, ""); return s }, 200},
		{"list", func() int { s, _ := b.do("GET", "/v1/sign_in_tokens?limit=2", ""); return s }, 200},
		{"unknown route", func() int { s, _ := b.do("GET", "/v1/nothing_here", ""); return s }, 404},
		{"made-up method", func() int { s, _ := b.do("BREW", "/v1/sign_in_tokens", ""); return s }, 405},
	}
	for _, s := range steps {
		if got := s.do(); got != s.status {
			t.Fatalf("%s: status %d, want %d", s.name, got, s.status)
		}
	}

	got := scrape(t, b.srv.URL)
	want := map[string]float64{
		`signin_tokens_tokens_created_total{}`:                                                                 5,
		`signin_tokens_tokens_redeemed_total{}`:                                                                1,
		`signin_tokens_tokens_revoked_total{}`:                                                                 1,
		`signin_tokens_token_redemption_failures_total{outcome="already_used"}`:                                1,
		`signin_tokens_token_redemption_failures_total{outcome="revoked"}`:                                     1,
		`signin_tokens_token_redemption_failures_total{outcome="expired"}`:                                     1,
		`signin_tokens_token_redemption_failures_total{outcome="invalid"}`:                                     2,
		`signin_tokens_token_redemption_failures_total{outcome="not_found"}`:                                   1,
		`signin_tokens_token_redemption_failures_total{outcome="missing"}`:                                     1,
		`signin_tokens_token_redemption_failures_total{outcome="unavailable"}`:                                 0,
		`signin_tokens_token_redemption_failures_total{outcome="error"}`:                                       0,
		`signin_tokens_http_requests_total{method="POST",route="/v1/sign_in_tokens",status="200"}`:             6,
		`signin_tokens_http_requests_total{method="POST",route="/v1/tickets/redeem",status="200"}`:             1,
		`signin_tokens_http_requests_total{method="POST",route="/v1/tickets/redeem",status="400"}`:             6,
		`signin_tokens_http_requests_total{method="POST",route="/v1/tickets/redeem",status="422"}`:             1,
		`signin_tokens_http_requests_total{method="POST",route="/v1/sign_in_tokens/{id}/revoke",status="200"}`: 1,
		`signin_tokens_http_requests_total{method="POST",route="/sign_in_tokens/{id}/revoke",status="400"}`:    1,
		`signin_tokens_http_requests_total{method="GET",route="/v1/sign_in_tokens/{id}",status="200"}`:         1,
		`signin_tokens_http_requests_total{method="GET",route="/v1/sign_in_tokens",status="200"}`:              1,
		`signin_tokens_http_requests_total{method="GET",route="/v1/*",status="404"}`:                           1,
		`signin_tokens_http_requests_total{method="OTHER",route="unmatched",status="405"}`:                     1,
		`signin_tokens_http_request_duration_seconds_count{method="POST",route="/v1/tickets/redeem"}`:          8,
		`signin_tokens_http_request_duration_seconds_count{method="POST",route="/v1/sign_in_tokens"}`:          6,
		`signin_tokens_http_request_duration_seconds_count{method="GET",route="/v1/sign_in_tokens/{id}"}`:      1,
		`signin_tokens_http_request_duration_seconds_count{method="POST",route="/sign_in_tokens/{id}/revoke"}`: 1,
	}
	for key, w := range want {
		if v, ok := got[key]; !ok || v != w {
			t.Errorf("%s: got %v (present %v), want %v", key, v, ok, w)
		}
	}
	// Every request was counted once; a request no route matched under /v1
	// is counted under chi's mount pattern /v1/*.
	var requests float64
	for key, v := range got {
		if strings.HasPrefix(key, "signin_tokens_http_requests_total{") {
			requests += v
		}
	}
	if requests != 20 {
		t.Errorf("sum of signin_tokens_http_requests_total: got %v, want 20 (the requests before this scrape)", requests)
	}
	if got[`signin_tokens_http_request_duration_seconds_sum{method="POST",route="/v1/sign_in_tokens"}`] <= 0 {
		t.Error("request duration sum: got 0, want the time the creates took")
	}

	// The pool: pgxpool's figures, the pool no bigger than its maximum.
	max := got[`signin_tokens_db_connections_max{}`]
	open := got[`signin_tokens_db_connections{state="idle"}`] + got[`signin_tokens_db_connections{state="in_use"}`]
	if max < 1 || open < 1 || open > max {
		t.Errorf("pool: max %v, open %v; want 1 <= open <= max", max, open)
	}
	for _, key := range []string{`signin_tokens_db_connection_waits_total{}`, `signin_tokens_db_connection_wait_seconds_total{}`} {
		if _, ok := got[key]; !ok {
			t.Errorf("%s missing", key)
		}
	}
	// Group commit: requests one after another each find a writer idle and
	// go alone, so no group has formed.
	for _, key := range []string{`signin_tokens_db_write_groups_total{}`, `signin_tokens_db_grouped_writes_total{}`, `signin_tokens_db_group_retried_writes_total{}`} {
		if v, ok := got[key]; !ok || v != 0 {
			t.Errorf("%s: got %v (present %v), want 0", key, v, ok)
		}
	}
	// The Go runtime collector is there too.
	if got[`go_goroutines{}`] < 1 {
		t.Errorf("go_goroutines: got %v, want at least 1", got[`go_goroutines{}`])
	}
	// The scrape itself is counted on the next one.
	if again := scrape(t, b.srv.URL); again[`signin_tokens_http_requests_total{method="GET",route="/metrics",status="200"}`] != 1 {
		t.Errorf("/metrics requests: got %v, want 1", again[`signin_tokens_http_requests_total{method="GET",route="/metrics",status="200"}`])
	}
}

func TestRedeemOutcome(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want string
	}{
		{tokens.ErrAlreadyUsed, "already_used"},
		{tokens.ErrRevoked, "revoked"},
		{tokens.ErrTicketExpired, "expired"},
		{tokens.ErrTicketInvalid, "invalid"},
		{tokens.ErrCannotBeUsed, "not_found"},
		{tokens.ParamMissing("ticket"), "missing"},
		{fmt.Errorf("%w: connection refused", tokens.ErrUnavailable), "unavailable"},
		{errors.New("disk on fire"), "error"},
	}
	for _, tc := range cases {
		if got := metrics.RedeemOutcome(tc.err); got != tc.want {
			t.Errorf("RedeemOutcome(%v): got %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestPoolWithoutStore checks that no pool series appear before the
// database is connected, and that they appear once it is.
func TestPoolWithoutStore(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	gate := store.NewGate()
	defer gate.Close()
	m.WatchPool(gate)
	srv := httptest.NewServer(muxWith(m))
	defer srv.Close()
	for key := range scrape(t, srv.URL) {
		if strings.HasPrefix(key, "signin_tokens_db_") {
			t.Errorf("%s present before the store is open", key)
		}
	}

	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	gate.Open(st)
	got := scrape(t, srv.URL)
	want, _ := store.PoolStatsOf(st)
	if got[`signin_tokens_db_connections_max{}`] != float64(want.MaxConns) ||
		got[`signin_tokens_db_connections{state="idle"}`] != float64(want.IdleConns) ||
		got[`signin_tokens_db_connections{state="in_use"}`] != float64(want.InUseConns) {
		t.Errorf("pool series: got max %v idle %v in_use %v, want %+v", got[`signin_tokens_db_connections_max{}`],
			got[`signin_tokens_db_connections{state="idle"}`], got[`signin_tokens_db_connections{state="in_use"}`], want)
	}
	if want.IdleConns+want.InUseConns < 1 {
		t.Errorf("sqlite pool: got %+v, want a connection open after Ping", want)
	}
}

func muxWith(m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	return mux
}

func TestMethodLabelBounded(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	for _, method := range []string{"GET", "POST", "BREW", "PROPFIND", "get"} {
		m.ObserveRequest("/healthz", method, 200, time.Millisecond)
	}
	srv := httptest.NewServer(muxWith(m))
	defer srv.Close()
	var methods []string
	for key := range scrape(t, srv.URL) {
		if strings.HasPrefix(key, "signin_tokens_http_requests_total{") {
			_, rest, _ := strings.Cut(key, `method="`)
			method, _, _ := strings.Cut(rest, `"`)
			methods = append(methods, method)
		}
	}
	sort.Strings(methods)
	if want := []string{"GET", "OTHER", "POST"}; !slices.Equal(methods, want) {
		t.Errorf("method labels: got %v, want %v", methods, want)
	}
}

// TestVerifyAndPageCounted: verifications and the sign-in page's views and
// continues are counted by outcome, and every outcome shows from the start.
func TestVerifyAndPageCounted(t *testing.T) {
	b := setup(t)
	zero := scrape(t, b.srv.URL)
	for _, name := range []string{`signin_tokens_ticket_verifications_total{outcome="ok"}`,
		`signin_tokens_ticket_verifications_total{outcome="invalid"}`,
		`signin_tokens_sign_in_page_total{outcome="expired",step="view"}`,
		`signin_tokens_sign_in_page_total{outcome="ok",step="continue"}`} {
		if v, ok := zero[name]; !ok || v != 0 {
			t.Errorf("%s before any traffic: got %v (shown %v), want 0", name, v, ok)
		}
	}
	_, ticket := b.create(`{"user_id":"u"}`)
	b.do("POST", "/v1/tickets/verify", `{"ticket":"`+ticket+`"}`)
	b.do("POST", "/v1/tickets/verify", `{"ticket":"x.y.z"}`)
	for _, path := range []string{"/sign-in?__clerk_ticket=" + ticket, "/sign-in?__clerk_ticket=bad"} {
		resp, err := http.Get(b.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(b.srv.URL+"/sign-in", url.Values{"ticket": {ticket}})
	if err != nil || resp.StatusCode != 303 {
		t.Fatalf("POST /sign-in: %v %v, want 303", resp, err)
	}
	resp.Body.Close()
	got := scrape(t, b.srv.URL)
	for name, want := range map[string]float64{
		// The page verifies too: 1 API + 1 view + 1 continue are ok.
		`signin_tokens_ticket_verifications_total{outcome="ok"}`:              3,
		`signin_tokens_ticket_verifications_total{outcome="invalid"}`:         2,
		`signin_tokens_sign_in_page_total{outcome="ok",step="view"}`:          1,
		`signin_tokens_sign_in_page_total{outcome="invalid",step="view"}`:     1,
		`signin_tokens_sign_in_page_total{outcome="ok",step="continue"}`:      1,
		`signin_tokens_sign_in_page_total{outcome="invalid",step="continue"}`: 0,
	} {
		if got[name] != want {
			t.Errorf("%s: got %v, want %v", name, got[name], want)
		}
	}
}
