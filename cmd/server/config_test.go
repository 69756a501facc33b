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
		"WEBHOOK_URLS":                 "hooks.example.com/in",
		"WEBHOOK_SECRET":               "whsec_c2hvcnQ=",
		"WEBHOOK_TIMEOUT":              "10",
		"WEBHOOK_CONCURRENCY":          "0",
		"WEBHOOK_RETRY_SCHEDULE":       "5s,,1m",
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

// TestWebhookConfig: the webhook settings as read, and what is refused, with
// messages that say what is wrong and never repeat a secret.
func TestWebhookConfig(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	cfg, err := loadConfig(env(map[string]string{
		"WEBHOOK_URLS":           " https://a.example.com/hook , http://b.example.com:8081/in?x=1",
		"WEBHOOK_SECRET":         secret + ",whsec_c2Vjb25kLXNlY3JldC1vZi0yNC1ieXRlcyE=",
		"WEBHOOK_RETRY_SCHEDULE": "1s, 2m",
	}))
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Webhooks
	if len(w.URLs) != 2 || w.URLs[1] != "http://b.example.com:8081/in?x=1" || w.Timeout != 10*time.Second ||
		w.Concurrency != 100 || len(w.Schedule) != 2 || w.Schedule[1] != 2*time.Minute {
		t.Errorf("webhooks: got %+v", w)
	}
	if got := strings.Count(w.Signer.Signature("evt_1", time.Unix(0, 0), nil), "v1,"); got != 2 {
		t.Errorf("signatures: got %d, want one per secret", got)
	}
	if off, err := loadConfig(env(nil)); err != nil || len(off.Webhooks.URLs) != 0 {
		t.Errorf("no WEBHOOK_URLS: got %+v, %v, want webhooks off", off.Webhooks, err)
	}

	cases := []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"WEBHOOK_URLS": "https://a.example.com/hook"}, "WEBHOOK_SECRET: required with WEBHOOK_URLS"},
		{map[string]string{"WEBHOOK_URLS": "ftp://a.example.com/hook", "WEBHOOK_SECRET": secret}, `WEBHOOK_URLS: must be an absolute http or https URL, got "ftp://a.example.com/hook"`},
		{map[string]string{"WEBHOOK_SECRET": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "WEBHOOK_SECRET: secret 1 must start with whsec_"},
		{map[string]string{"WEBHOOK_SECRET": secret + ",whsec_MfKQ9r8GKYqrTwjUPD8IL!!"}, "WEBHOOK_SECRET: secret 2 must be whsec_ followed by standard base64"},
		{map[string]string{"WEBHOOK_TIMEOUT": "10m"}, `WEBHOOK_TIMEOUT: must be a duration from 100ms to 5m such as 10s, got "10m"`},
		{map[string]string{"WEBHOOK_CONCURRENCY": "many"}, `WEBHOOK_CONCURRENCY: must be a whole number from 1 to 1000, got "many"`},
		{map[string]string{"WEBHOOK_RETRY_SCHEDULE": "5s,0s"}, `WEBHOOK_RETRY_SCHEDULE: "0s" is not a duration above zero`},
	}
	for _, c := range cases {
		_, err := loadConfig(env(c.vars))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error saying %q", c.vars, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "MfKQ9r8GKYqrTwjUPD8") {
			t.Errorf("%v: the error repeats a secret: %v", c.vars, err)
		}
	}
}
