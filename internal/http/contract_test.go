package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestErrorRows drives every error row of the contract through the real
// router and compares each body, trace id aside, with a golden file.
func TestErrorRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pending := b.create(`{"user_id":"user_1"}`)
	accepted := b.create(`{"user_id":"user_2"}`)
	if r := b.do("POST", "/v1/tickets/redeem", fmt.Sprintf(`{"ticket":%q}`, accepted["token"])); r.status != 200 {
		t.Fatalf("redeem: %d %s", r.status, r.raw)
	}
	revoked := b.create(`{"user_id":"user_3"}`)
	if r := b.do("POST", "/v1/sign_in_tokens/"+revoked["id"].(string)+"/revoke", ""); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	unstored, err := b.ticketer.Sign(tokens.Token{ID: tokens.KindSignIn.NewID(time.Now()), UserID: "user_4",
		CreatedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	expiring := b.create(`{"user_id":"user_5","expires_in_seconds":60}`)
	redeem := func(ticket any) string { return fmt.Sprintf(`{"ticket":%q}`, ticket) }

	cases := []struct {
		name         string
		method, path string
		body         string
		headers      []string
		before       func()
		status       int
		code         string
		param        string
	}{
		{name: "auth_missing", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":"u"}`,
			headers: []string{"Authorization", ""}, status: 401, code: "clerk_key_invalid"},
		{name: "auth_unknown_key", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":"u"}`,
			headers: []string{"Authorization", "Bearer sk_test_not_a_key_we_know"}, status: 401, code: "clerk_key_invalid"},
		{name: "auth_format", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":"u"}`,
			headers: []string{"Authorization", "Basic dXNlcjpwYXNz"}, status: 401, code: "authorization_header_format_invalid"},
		{name: "auth_bearer_without_key", method: "GET", path: "/v1/sign_in_tokens",
			headers: []string{"Authorization", "Bearer"}, status: 401, code: "authorization_header_format_invalid"},
		{name: "create_user_id_missing", method: "POST", path: "/v1/sign_in_tokens", body: `{}`,
			status: 422, code: "form_param_missing", param: "user_id"},
		{name: "create_user_id_empty", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":""}`,
			status: 422, code: "form_param_missing", param: "user_id"},
		{name: "create_expires_zero", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":"u","expires_in_seconds":0}`,
			status: 422, code: "form_param_value_invalid", param: "expires_in_seconds"},
		{name: "create_expires_over_max", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":"u","expires_in_seconds":31536001}`,
			status: 422, code: "form_param_value_invalid", param: "expires_in_seconds"},
		{name: "create_user_id_type", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":123}`,
			status: 422, code: "form_param_type_invalid", param: "user_id"},
		{name: "create_expires_type", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":"u","expires_in_seconds":"60"}`,
			status: 422, code: "form_param_type_invalid", param: "expires_in_seconds"},
		{name: "create_body_invalid", method: "POST", path: "/v1/sign_in_tokens", body: `{"user_id":`,
			status: 400, code: "request_body_invalid"},
		{name: "create_body_too_large", method: "POST", path: "/v1/sign_in_tokens",
			body: `{"user_id":"` + strings.Repeat("a", 70<<10) + `"}`, status: 413, code: "request_body_too_large"},
		{name: "revoke_not_found", method: "POST", path: "/v1/sign_in_tokens/sit_doesnotexist/revoke",
			status: 404, code: "resource_not_found"},
		{name: "revoke_accepted", method: "POST", path: "/v1/sign_in_tokens/" + accepted["id"].(string) + "/revoke",
			status: 400, code: "sign_in_token_cannot_be_revoked_code"},
		{name: "revoke_revoked", method: "POST", path: "/v1/sign_in_tokens/" + revoked["id"].(string) + "/revoke",
			status: 400, code: "sign_in_token_cannot_be_revoked_code"},
		{name: "get_not_found", method: "GET", path: "/v1/sign_in_tokens/sit_doesnotexist",
			status: 404, code: "resource_not_found"},
		{name: "list_limit_invalid", method: "GET", path: "/v1/sign_in_tokens?limit=501",
			status: 422, code: "form_param_value_invalid", param: "limit"},
		{name: "list_offset_invalid", method: "GET", path: "/v1/sign_in_tokens?offset=-1",
			status: 422, code: "form_param_value_invalid", param: "offset"},
		{name: "list_status_invalid", method: "GET", path: "/v1/sign_in_tokens?status=expired",
			status: 422, code: "form_param_value_invalid", param: "status"},
		{name: "redeem_ticket_missing", method: "POST", path: "/v1/tickets/redeem", body: `{}`,
			status: 422, code: "form_param_missing", param: "ticket"},
		{name: "redeem_ticket_invalid", method: "POST", path: "/v1/tickets/redeem", body: `{"ticket":"not.a.jwt"}`,
			status: 400, code: "ticket_invalid_code"},
		{name: "redeem_already_used", method: "POST", path: "/v1/tickets/redeem", body: redeem(accepted["token"]),
			status: 400, code: "sign_in_token_already_used_code"},
		{name: "redeem_revoked", method: "POST", path: "/v1/tickets/redeem", body: redeem(revoked["token"]),
			status: 400, code: "sign_in_token_revoked_code"},
		{name: "redeem_not_stored", method: "POST", path: "/v1/tickets/redeem", body: redeem(unstored),
			status: 400, code: "sign_in_token_cannot_be_used_code"},
		{name: "redeem_expired", method: "POST", path: "/v1/tickets/redeem", body: redeem(expiring["token"]),
			before: func() { b.clock.Advance(2 * time.Minute) }, status: 400, code: "ticket_expired_code"},
		{name: "route_not_found", method: "GET", path: "/v1/nothing_here", status: 404, code: "resource_not_found"},
		{name: "method_not_allowed", method: "DELETE", path: "/v1/sign_in_tokens", status: 405, code: "request_method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			r := b.do(tc.method, tc.path, tc.body, tc.headers...)
			r.wantError(t, tc.status, tc.code)
			if tc.param != "" && r.meta()["param_name"] != tc.param {
				t.Errorf("meta.param_name: got %v, want %s", r.meta()["param_name"], tc.param)
			}
			golden(t, tc.name, r.raw)
		})
	}
	// The pending token was not touched by any of it.
	if r := b.do("GET", "/v1/sign_in_tokens/"+pending["id"].(string), ""); r.body["status"] != "pending" {
		t.Errorf("pending token: got status %v, want pending", r.body["status"])
	}
}

// golden compares an error body with testdata/golden/NAME.json, the trace id
// replaced by a placeholder; -update rewrites the files.
func golden(t *testing.T, name string, raw []byte) {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("body: %v", err)
	}
	body["clerk_trace_id"] = "TRACE_ID"
	got, _ := json.MarshalIndent(body, "", "  ")
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("body differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// failingStore fails Get with a fixed error and passes everything else on.
type failingStore struct {
	tokens.Store
	err error
}

func (f failingStore) Get(ctx context.Context, id string) (tokens.Token, error) {
	return tokens.Token{}, f.err
}

// TestServerErrorRows: the rows that need a failing dependency or a limit,
// each with its status, headers and golden body, and no internals shown.
func TestServerErrorRows(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		opt    func(*options)
		status int
		code   string
		header string
	}{
		{"internal_error", func(o *options) {
			o.wrap = func(st tokens.Store) tokens.Store {
				return failingStore{st, errors.New("pq: relation secret_table_name does not exist")}
			}
		}, 500, "internal_clerk_error", ""},
		{"service_unavailable", func(o *options) {
			o.wrap = func(st tokens.Store) tokens.Store {
				return failingStore{st, fmt.Errorf("get: %w: dial tcp 10.1.2.3:5432: connection refused", tokens.ErrUnavailable)}
			}
		}, 503, "service_unavailable", "Retry-After"},
		{"too_many_requests", func(o *options) { o.limits.AdminPerKey = 1 }, 429, "too_many_requests", "Retry-After"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.opt)
			if tc.code == "too_many_requests" {
				b.do("GET", "/v1/sign_in_tokens/sit_first", "") // spends the one request allowed
			}
			r := b.do("GET", "/v1/sign_in_tokens/sit_anything", "")
			r.wantError(t, tc.status, tc.code)
			if tc.header != "" && r.header.Get(tc.header) == "" {
				t.Errorf("%s header missing", tc.header)
			}
			for _, internal := range []string{"secret_table_name", "10.1.2.3", "dial tcp"} {
				if bytes.Contains(r.raw, []byte(internal)) {
					t.Errorf("the body shows internals (%s): %s", internal, r.raw)
				}
			}
			golden(t, tc.name, r.raw)
		})
	}
}
