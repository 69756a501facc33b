package http_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// fuzzTarget is the real router on a real (SQLite) store, cheap enough to
// call thousands of times a second, with the tickets it issued.
type fuzzTarget struct {
	handler  http.Handler
	mu       sync.Mutex
	issued   map[string]bool // token ids
	redeemed map[string]bool
}

func newFuzzTarget(f *testing.F) *fuzzTarget {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	keys, _ := tokens.NewKeySet(tokens.GenerateKey())
	svc := tokens.NewService(tokens.Config{Store: st, Ticketer: tokens.NewTicketer(keys, testIssuer, time.Now),
		DefaultExpiresIn: time.Hour, MaxExpiresIn: 24 * time.Hour})
	return &fuzzTarget{
		handler:  apihttp.NewServer(apihttp.Config{Service: svc, SecretKeys: []string{testKey}, Logger: zerolog.New(io.Discard)}),
		issued:   map[string]bool{},
		redeemed: map[string]bool{},
	}
}

// serve sends one request and checks the properties every answer has: never
// a 5xx, always JSON, errors in the contract's shape.
func (ft *fuzzTarget) serve(t testing.TB, method, target, contentType string, body []byte) (int, map[string]any) {
	req := httptest.NewRequest(method, "http://fuzz.test/", strings.NewReader(string(body)))
	u, err := req.URL.Parse(target)
	if err != nil {
		return 0, nil
	}
	req.URL, req.RequestURI = u, ""
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	ft.handler.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s: status %d: %s", method, target, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type: got %q", ct)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("body is not a JSON object: %s", rec.Body)
	}
	if rec.Code >= 400 {
		errs, _ := out["errors"].([]any)
		if trace, _ := out["clerk_trace_id"].(string); len(errs) != 1 || trace == "" {
			t.Fatalf("error body not in the contract's shape: %s", rec.Body)
		}
	}
	return rec.Code, out
}

var contentTypes = []string{"application/json", "application/x-www-form-urlencoded", "text/plain", ""}

func FuzzCreateRequest(f *testing.F) {
	ft := newFuzzTarget(f)
	for _, seed := range []string{`{"user_id":"u"}`, `{"user_id":"u","expires_in_seconds":60,"org_id":"o"}`,
		`user_id=u&expires_in_seconds=5`, `{"user_id":1}`, `{"expires_in_seconds":1e99}`, `null`, `[]`,
		`{"user_id":"u","metadata":{"locale":"de","n":[1,{"x":null}]}}`, `{"user_id":"u","metadata":"{}"}`,
		`{"user_id":"u","metadata":{"a":"}"}`, `user_id=u&metadata=%7B%22a%22%3A1%7D`, `user_id=u&metadata=%5B%5D`,
		`{"user_id":"u","redirect_url":"https://app.example.com@evil.com/"}`} {
		for i := range contentTypes {
			f.Add(uint8(i), []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, ct uint8, body []byte) {
		status, out := ft.serve(t, "POST", "/v1/sign_in_tokens", contentTypes[int(ct)%len(contentTypes)], body)
		user, _ := out["user_id"].(string)
		ticket, _ := out["token"].(string)
		if status == 200 && (out["status"] != "pending" || user == "" || ticket == "") {
			t.Fatalf("created token is malformed: %v", out)
		}
		if m, ok := out["metadata"]; ok {
			if _, isObject := m.(map[string]any); status != 200 || !isObject {
				t.Fatalf("metadata shown is not an object: %v", out)
			}
		}
	})
}

func FuzzRedeemRequest(f *testing.F) {
	ft := newFuzzTarget(f)
	for i := 0; i < 3; i++ {
		_, out := ft.serve(f, "POST", "/v1/sign_in_tokens", "application/json", []byte(`{"user_id":"u"}`))
		ft.issued[out["id"].(string)] = true
		f.Add([]byte(`{"ticket":"` + out["token"].(string) + `"}`))
	}
	f.Add([]byte(`{"ticket":"a.b.c"}`))
	f.Add([]byte(`ticket=a.b.c`))
	f.Add([]byte(`{"ticket":["x"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		status, out := ft.serve(t, "POST", "/v1/tickets/redeem", "application/json", body)
		if status != 200 {
			return
		}
		// A success is for a token we issued, and only ever once.
		id, _ := out["id"].(string)
		ft.mu.Lock()
		defer ft.mu.Unlock()
		if !ft.issued[id] || ft.redeemed[id] {
			t.Fatalf("redeem of %q succeeded for %v (issued %v, redeemed before %v)", body, id, ft.issued[id], ft.redeemed[id])
		}
		ft.redeemed[id] = true
	})
}

func FuzzListQuery(f *testing.F) {
	ft := newFuzzTarget(f)
	for _, seed := range []string{"", "limit=5", "limit=0", "offset=-1", "status=pending&user_id=u",
		"limit=500&offset=99999999999", "status=%ff", "user_id=%00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		status, out := ft.serve(t, "GET", "/v1/sign_in_tokens?"+query, "", nil)
		if status == 200 {
			if _, ok := out["data"].([]any); !ok {
				t.Fatalf("list without a data array: %v", out)
			}
		}
	})
}
