package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/actortoken"
	"github.com/clerk/clerk-sdk-go/v2/signintoken"
)

// TestClerkGoSDK drives the real router with Clerk's own Go SDK, changing
// nothing but its base URL, given both with and without /v1.
func TestClerkGoSDK(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, suffix := range []string{"", "/v1", "/v1/"} {
		t.Run("base"+suffix, func(t *testing.T) {
			client := func(key string) *signintoken.Client {
				return signintoken.NewClient(&clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
					URL: clerk.String(b.srv.URL + suffix), Key: clerk.String(key), HTTPClient: b.srv.Client(),
				}})
			}
			sdk := client(testKey)
			ctx := context.Background()
			now := b.clock.Now()

			tok, err := sdk.Create(ctx, &signintoken.CreateParams{UserID: clerk.String("user_sdk")})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if tok.Object != "sign_in_token" || tok.UserID != "user_sdk" || tok.Status != "pending" ||
				tok.Token == "" || tok.CreatedAt != now.UnixMilli() || tok.UpdatedAt != now.UnixMilli() {
				t.Errorf("create: got %+v", tok)
			}
			if tok.Response == nil || tok.Response.TraceID == "" {
				t.Error("create: SDK saw no trace id")
			}
			claims, err := b.ticketer.Verify(tok.Token)
			if err != nil || claims.ExpiresAt.Unix() != now.Add(30*24*time.Hour).Unix() {
				t.Errorf("default expiry: claims %+v, err %v", claims, err)
			}

			custom, err := sdk.Create(ctx, &signintoken.CreateParams{UserID: clerk.String("user_sdk"), ExpiresInSeconds: clerk.Int64(600)})
			if err != nil {
				t.Fatalf("create with expiry: %v", err)
			}
			if claims, err := b.ticketer.Verify(custom.Token); err != nil || claims.ExpiresAt.Unix() != now.Add(10*time.Minute).Unix() {
				t.Errorf("custom expiry: claims %+v, err %v", claims, err)
			}

			revoked, err := sdk.Revoke(ctx, tok.ID)
			if err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if revoked.ID != tok.ID || revoked.Status != "revoked" || revoked.Token != "" || revoked.URL != nil {
				t.Errorf("revoke: got %+v", revoked)
			}

			errorCases := []struct {
				name   string
				call   func() error
				status int
				code   string
			}{
				{"revoke twice", func() error { _, err := sdk.Revoke(ctx, tok.ID); return err }, 400, "sign_in_token_cannot_be_revoked_code"},
				{"revoke unknown", func() error { _, err := sdk.Revoke(ctx, "sit_unknown"); return err }, 404, "resource_not_found"},
				{"create without user", func() error { _, err := sdk.Create(ctx, &signintoken.CreateParams{}); return err }, 422, "form_param_missing"},
				{"expiry out of range", func() error {
					_, err := sdk.Create(ctx, &signintoken.CreateParams{UserID: clerk.String("u"), ExpiresInSeconds: clerk.Int64(0)})
					return err
				}, 422, "form_param_value_invalid"},
				{"wrong key", func() error { _, err := client("sk_test_wrong_wrong_wrong").Revoke(ctx, custom.ID); return err }, 401, "clerk_key_invalid"},
			}
			for _, ec := range errorCases {
				err := ec.call()
				var apiErr *clerk.APIErrorResponse
				if !errors.As(err, &apiErr) {
					t.Errorf("%s: got %T %v, want *clerk.APIErrorResponse", ec.name, err, err)
					continue
				}
				if apiErr.HTTPStatusCode != ec.status || len(apiErr.Errors) != 1 || apiErr.Errors[0].Code != ec.code ||
					apiErr.TraceID == "" || apiErr.Errors[0].LongMessage == "" {
					t.Errorf("%s: got %s, want status %d code %s", ec.name, fmt.Sprint(apiErr), ec.status, ec.code)
				}
			}
		})
	}
}

// TestClerkGoSDKActorTokens drives the actor token routes with Clerk's Go
// SDK (package actortoken), base URLs with and without /v1.
func TestClerkGoSDKActorTokens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, suffix := range []string{"", "/v1", "/v1/"} {
		t.Run("base"+suffix, func(t *testing.T) {
			sdk := actortoken.NewClient(&clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
				URL: clerk.String(b.srv.URL + suffix), Key: clerk.String(testKey), HTTPClient: b.srv.Client(),
			}})
			ctx := context.Background()
			now := b.clock.Now()
			tok, err := sdk.Create(ctx, &actortoken.CreateParams{UserID: clerk.String("user_sdk"),
				Actor: json.RawMessage(`{"sub":"user_support","reason":"ticket 42"}`)})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if tok.Object != "actor_token" || tok.UserID != "user_sdk" || tok.Status != "pending" || tok.Token == "" ||
				!strings.HasPrefix(tok.ID, "act_") || tok.CreatedAt != now.UnixMilli() {
				t.Errorf("create: got %+v", tok)
			}
			var actor map[string]string
			if err := json.Unmarshal(tok.Actor, &actor); err != nil || actor["sub"] != "user_support" || actor["reason"] != "ticket 42" {
				t.Errorf("actor: got %s", tok.Actor)
			}
			claims, err := b.ticketer.Verify(tok.Token)
			if err != nil || claims.Type != "actor_token" || claims.Actor == nil || claims.Actor.Subject != "user_support" ||
				claims.ExpiresAt.Unix() != now.Add(time.Hour).Unix() {
				t.Errorf("ticket: claims %+v, err %v", claims, err)
			}
			revoked, err := sdk.Revoke(ctx, tok.ID)
			if err != nil || revoked.Status != "revoked" || revoked.Token != "" {
				t.Fatalf("revoke: %+v, %v", revoked, err)
			}
			for _, ec := range []struct {
				name   string
				call   func() error
				status int
				code   string
			}{
				{"revoke twice", func() error { _, err := sdk.Revoke(ctx, tok.ID); return err }, 400, "actor_token_cannot_be_revoked_code"},
				{"revoke a sign-in token", func() error { _, err := sdk.Revoke(ctx, "sit_unknown"); return err }, 404, "resource_not_found"},
				{"create without actor", func() error {
					_, err := sdk.Create(ctx, &actortoken.CreateParams{UserID: clerk.String("u")})
					return err
				}, 422, "form_param_missing"},
			} {
				var apiErr *clerk.APIErrorResponse
				if err := ec.call(); !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != ec.status ||
					len(apiErr.Errors) != 1 || apiErr.Errors[0].Code != ec.code {
					t.Errorf("%s: got %v, want %d %s", ec.name, err, ec.status, ec.code)
				}
			}
		})
	}
}
