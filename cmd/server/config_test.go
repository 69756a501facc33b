package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
)

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatalf("empty environment: %v", err)
	}
	if cfg.HTTPAddr != ":8080" || cfg.DataDir != "./data" || cfg.DefaultExpiresIn != 30*24*time.Hour ||
		cfg.Database.Kind != "sqlite" || cfg.LogFormat != "auto" || cfg.RequestTimeout != 10*time.Second ||
		cfg.DatabaseWriters != postgres.DefaultWriters {
		t.Errorf("defaults: got %+v", cfg)
	}
}

// TestLoadConfigNamesTheVariable: every invalid value is refused with a
// message that names its variable.
func TestLoadConfigNamesTheVariable(t *testing.T) {
	cases := map[string]string{
		"HTTP_ADDR":                    "8080",
		"DATABASE_URL":                 "mysql://db/tokens",
		"SECRET_KEYS":                  "short",
		"SIGN_IN_URL":                  "/relative",
		"PUBLIC_URL":                   "tokens.example.com",
		"ALLOWED_REDIRECT_URLS":        "https://app.example.com/ok,javascript:alert(1)",
		"USER_LOOKUP_URL":              "https://users.example.com/users",
		"DEFAULT_EXPIRES_IN_SECONDS":   "0",
		"MAX_EXPIRES_IN_SECONDS":       "ten",
		"LOG_LEVEL":                    "loud",
		"LOG_FORMAT":                   "xml",
		"RATE_LIMIT_REDEEM_PER_MINUTE": "-1",
		"TRUSTED_PROXIES":              "10.0.0.0",
		"RETENTION_PERIOD":             "forever",
		"SHUTDOWN_TIMEOUT":             "-5s",
		"MAX_BODY_BYTES":               "10",
		"REQUEST_TIMEOUT":              "1ms",
		"DATABASE_WRITERS":             "-1",
		"REQUIRE_SYNC_REPLICATION":     "maybe",
	}
	for name, value := range cases {
		_, err := loadConfig(func(k string) string {
			if k == name {
				return value
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: got %v, want an error naming %s", name, value, err, name)
		}
	}
}

// TestREADMEListsEveryVariable keeps the README's configuration table in step
// with the variables the binary reads.
func TestREADMEListsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range envVars {
		if !strings.Contains(string(readme), "| `"+v.name+"` |") {
			t.Errorf("README.md has no configuration row for %s", v.name)
		}
	}
}
