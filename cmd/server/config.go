package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
	"github.com/signin-tokens/signin-tokens/internal/tracing"
	"github.com/signin-tokens/signin-tokens/internal/userdir"
	"github.com/signin-tokens/signin-tokens/internal/webhook"
)

// Config is the whole configuration, read from the environment in one place.
type Config struct {
	HTTPAddr         string
	DatabaseURL      string
	Database         store.Location
	DataDir          string
	DatabaseWriters  int
	SecretKeys       []string
	SigningKeyFile   string
	Issuer           string
	SignInURL        *url.URL
	PublicURL        *url.URL // nil: no hosted sign-in page
	Redirects        tokens.RedirectPolicy
	Users            *userdir.Directory // nil: no user lookup
	DefaultExpiresIn time.Duration
	MaxExpiresIn     time.Duration
	CodeSecrets      [][]byte // nil: a dev secret is generated under DATA_DIR
	CodeMaxAttempts  int
	CodeRateLimit    int
	LogLevel         string
	LogFormat        string // json, console, or auto until configure resolves it
	RedeemRateLimit  int
	AdminRateLimit   int
	TrustedProxies   []string
	RetentionPeriod  time.Duration
	// EventRetentionPeriod is how long events are kept; 0 keeps them.
	EventRetentionPeriod time.Duration
	RetentionInterval    time.Duration
	ShutdownTimeout      time.Duration
	MaxBodyBytes         int64
	RequestTimeout       time.Duration
	PprofAddr            string
	Tracing              tracing.Settings // from the standard OTEL_* variables
	RequireSync          bool
	Webhooks             Webhooks
}

// Webhooks is the webhook settings; no URLs: webhooks off, and nothing of
// River runs.
type Webhooks struct {
	URLs        []string
	Signer      webhook.Signer
	Timeout     time.Duration
	Concurrency int
	Schedule    webhook.Schedule
}

// envVar documents one environment variable; the table drives both loading
// defaults and the -h listing, so the two cannot disagree.
type envVar struct {
	name, def, help string
}

var envVars = []envVar{
	{"HTTP_ADDR", ":8080", "address to listen on"},
	{"DATABASE_URL", "", "postgres://... for PostgreSQL; sqlite:PATH or a file path for SQLite; empty: SQLite at $DATA_DIR/signin-tokens.db"},
	{"DATABASE_WRITERS", strconv.Itoa(postgres.DefaultWriters), "PostgreSQL: writers sending creates and redemptions; each sends those that queued while it was busy as one transaction (group commit); 0: each write on its own"},
	{"DATA_DIR", "./data", "where generated dev keys and the default SQLite database are kept"},
	{"SECRET_KEYS", "", "comma-separated admin keys, all accepted; empty: a dev key is generated under DATA_DIR"},
	{"SIGNING_KEY_FILE", "", "PEM file of PKCS#8 Ed25519 keys; the first signs, all verify; empty: a key is generated under DATA_DIR"},
	{"ISSUER", "signin-tokens", "the iss claim of tickets"},
	{"SIGN_IN_URL", "", "sign-in page; the url field is this with __clerk_ticket added; empty: no url field"},
	{"PUBLIC_URL", "", "this service's public base URL; set, the url field points at its hosted, scanner-safe page PUBLIC_URL/sign-in; empty: no page"},
	{"ALLOWED_REDIRECT_URLS", "", "comma-separated URL prefixes a token's redirect_url must start with (scheme and host compared case-insensitively); empty: every redirect_url refused"},
	{"USER_LOOKUP_URL", "", "optional user directory: GET with {user_id} substituted; 404 there refuses the token"},
	{"USER_LOOKUP_AUTHORIZATION", "", "Authorization header value sent to USER_LOOKUP_URL"},
	{"DEFAULT_EXPIRES_IN_SECONDS", "2592000", "ticket lifetime when the request gives none (30 days)"},
	{"MAX_EXPIRES_IN_SECONDS", "31536000", "largest expires_in_seconds accepted (365 days)"},
	{"CODE_SECRETS", "", "comma-separated secrets of 32 characters or more that key the stored hashes of one-time codes; the first hashes new codes, all check; empty: a secret is generated under DATA_DIR"},
	{"CODE_MAX_ATTEMPTS", strconv.Itoa(tokens.DefaultCodeMaxAttempts), "wrong one-time codes a token takes before it can no longer be redeemed by code (1 to 100)"},
	{"RATE_LIMIT_CODE_PER_MINUTE", "10", "redemptions by one-time code per user_id per minute, in each replica; 0: off"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"LOG_FORMAT", "auto", "json, console for human-readable lines, or auto: console when stdout is a terminal, else json"},
	{"RATE_LIMIT_REDEEM_PER_MINUTE", "0", "redemptions per client address per minute; 0: off"},
	{"RATE_LIMIT_ADMIN_PER_MINUTE", "0", "admin requests per secret key per minute; 0: off"},
	{"TRUSTED_PROXIES", "", "comma-separated CIDRs whose X-Forwarded-For gives the client address"},
	{"RETENTION_PERIOD", "720h", "delete tokens this long after they expired, redeemed, revoked or unused; 0: keep forever"},
	{"RETENTION_INTERVAL", "1m", "how often the retention sweep runs"},
	{"EVENT_RETENTION_PERIOD", "720h", "delete events this long after they were recorded; 0: keep forever"},
	{"SHUTDOWN_TIMEOUT", "20s", "how long in-flight requests may run after SIGTERM"},
	{"MAX_BODY_BYTES", "65536", "largest request body accepted"},
	{"REQUEST_TIMEOUT", "10s", "longest an API request may work, database calls included; then 503"},
	{"PPROF_ADDR", "", "address for Go's pprof profiles, e.g. 127.0.0.1:6060; empty: off. Never expose it"},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "", "OpenTelemetry: the collector's base URL, e.g. http://otel-collector:4318; empty (and no OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): tracing off, no spans"},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "OpenTelemetry: the full URL spans are sent to; wins over OTEL_EXPORTER_OTLP_ENDPOINT"},
	{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OpenTelemetry: http/protobuf or grpc"},
	{"OTEL_EXPORTER_OTLP_HEADERS", "", "OpenTelemetry: key=value,... headers sent to the collector (percent-encoded values)"},
	{"OTEL_TRACES_SAMPLER", "parentbased_always_on", "OpenTelemetry: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"},
	{"OTEL_TRACES_SAMPLER_ARG", "1", "OpenTelemetry: the ratio of the traceidratio samplers, 0 to 1"},
	{"OTEL_SERVICE_NAME", tracing.DefaultServiceName, "OpenTelemetry: service.name of the spans"},
	{"OTEL_RESOURCE_ATTRIBUTES", "", "OpenTelemetry: key=value,... added to the spans' resource"},
	{"OTEL_BSP_SCHEDULE_DELAY", "5000", "OpenTelemetry: milliseconds between exports of finished spans"},
	{"OTEL_TRACES_EXPORTER", "otlp", "OpenTelemetry: otlp, or none for tracing off"},
	{"OTEL_SDK_DISABLED", "false", "OpenTelemetry: true turns tracing off whatever the endpoint"},
	{"WEBHOOK_URLS", "", "comma-separated http or https URLs every event is POSTed to, signed (Standard Webhooks); empty: webhooks off"},
	{"WEBHOOK_SECRET", "", "comma-separated signing secrets, each whsec_ and the base64 of 24 to 64 random bytes; each signs every delivery, so a secret rotates by adding the new one first; required with WEBHOOK_URLS"},
	{"WEBHOOK_TIMEOUT", "10s", "longest one delivery attempt may take; past it the attempt failed and is retried"},
	{"WEBHOOK_CONCURRENCY", "100", "first attempts at once from the relay, and retries at once in each replica (1 to 1000); retry jobs are fetched in batches of up to this many, at most 2000 a second"},
	{"WEBHOOK_RETRY_SCHEDULE", webhook.DefaultSchedule, "comma-separated waits before each retry of a failed delivery (each moved by up to 10% at random); after the last, the delivery is given up"},
	{"REQUIRE_SYNC_REPLICATION", "false", "PostgreSQL: true refuses writes (503) and readiness while the primary does not replicate synchronously (synchronous_standby_names empty, or synchronous_commit below on), rechecked every second"},
}

// loadConfig reads the configuration and validates it; errors name the variable.
func loadConfig(getenv func(string) string) (Config, error) {
	get := func(name string) string { return envOrDefault(getenv, name) }
	var c Config
	var errs []string
	fail := func(name, format string, args ...any) {
		errs = append(errs, name+": "+fmt.Sprintf(format, args...))
	}
	seconds := func(name string, min, max int64) time.Duration {
		n, err := strconv.ParseInt(get(name), 10, 64)
		if err != nil || n < min || n > max {
			fail(name, "must be a whole number of seconds from %d to %d, got %q", min, max, get(name))
			return 0
		}
		return time.Duration(n) * time.Second
	}
	duration := func(name string, min time.Duration) time.Duration {
		d, err := time.ParseDuration(get(name))
		if err != nil || d < min {
			fail(name, "must be a duration of at least %s such as 30s or 24h, got %q", min, get(name))
		}
		return d
	}
	count := func(name string) int {
		n, err := strconv.Atoi(get(name))
		if err != nil || n < 0 {
			fail(name, "must be a whole number, 0 or more, got %q", get(name))
		}
		return n
	}

	c.HTTPAddr = get("HTTP_ADDR")
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
		fail("HTTP_ADDR", "must be host:port or :port, got %q", c.HTTPAddr)
	}
	c.DatabaseURL = getenv("DATABASE_URL")
	c.DataDir = get("DATA_DIR")
	if c.DatabaseWriters = count("DATABASE_WRITERS"); c.DatabaseWriters > 256 {
		fail("DATABASE_WRITERS", "must be at most 256, got %d", c.DatabaseWriters)
	}
	if loc, err := store.Parse(c.DatabaseURL, c.DataDir); err != nil {
		errs = append(errs, err.Error()) // already names DATABASE_URL
	} else {
		c.Database = loc
	}
	for _, k := range strings.Split(get("SECRET_KEYS"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			if len(k) < 16 || strings.ContainsAny(k, " \t") {
				fail("SECRET_KEYS", "each key must be at least 16 characters without spaces")
				break
			}
			c.SecretKeys = append(c.SecretKeys, k)
		}
	}
	c.SigningKeyFile = get("SIGNING_KEY_FILE")
	c.Issuer = get("ISSUER")
	absolute := func(name string) *url.URL {
		v := get(name)
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fail(name, "must be an absolute http or https URL, got %q", v)
		}
		return u
	}
	c.SignInURL = absolute("SIGN_IN_URL")
	if c.PublicURL = absolute("PUBLIC_URL"); c.PublicURL != nil &&
		(c.PublicURL.RawQuery != "" || c.PublicURL.Fragment != "" || c.PublicURL.User != nil) {
		fail("PUBLIC_URL", "must be a base URL without user, query or fragment, got %q", get("PUBLIC_URL"))
	}
	var prefixes []string
	for _, p := range strings.Split(get("ALLOWED_REDIRECT_URLS"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			prefixes = append(prefixes, p)
		}
	}
	if policy, err := tokens.NewRedirectPolicy(prefixes); err != nil {
		fail("ALLOWED_REDIRECT_URLS", "%v", err)
	} else {
		c.Redirects = policy
	}
	if v := get("USER_LOOKUP_URL"); v != "" {
		users, err := userdir.New(v, get("USER_LOOKUP_AUTHORIZATION"))
		if err != nil {
			fail("USER_LOOKUP_URL", "%v", err)
		}
		c.Users = users
	}
	c.MaxExpiresIn = seconds("MAX_EXPIRES_IN_SECONDS", 1, 10*365*24*3600)
	c.DefaultExpiresIn = seconds("DEFAULT_EXPIRES_IN_SECONDS", 1, 10*365*24*3600)
	if c.MaxExpiresIn > 0 && c.DefaultExpiresIn > c.MaxExpiresIn {
		fail("DEFAULT_EXPIRES_IN_SECONDS", "must not exceed MAX_EXPIRES_IN_SECONDS (%d)", int64(c.MaxExpiresIn/time.Second))
	}
	c.LogLevel = strings.ToLower(get("LOG_LEVEL"))
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		fail("LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	c.LogFormat = strings.ToLower(get("LOG_FORMAT"))
	switch c.LogFormat {
	case "json", "console", "auto":
	default:
		fail("LOG_FORMAT", "must be json, console or auto, got %q", c.LogFormat)
	}
	for _, secret := range strings.Split(get("CODE_SECRETS"), ",") {
		if secret = strings.TrimSpace(secret); secret == "" {
			continue
		}
		if len(secret) < tokens.MinCodeSecretBytes {
			fail("CODE_SECRETS", "each secret must be at least %d characters", tokens.MinCodeSecretBytes)
			break
		}
		c.CodeSecrets = append(c.CodeSecrets, []byte(secret))
	}
	if c.CodeMaxAttempts = count("CODE_MAX_ATTEMPTS"); c.CodeMaxAttempts < 1 || c.CodeMaxAttempts > 100 {
		fail("CODE_MAX_ATTEMPTS", "must be from 1 to 100, got %q", get("CODE_MAX_ATTEMPTS"))
	}
	c.CodeRateLimit = count("RATE_LIMIT_CODE_PER_MINUTE")
	c.RedeemRateLimit = count("RATE_LIMIT_REDEEM_PER_MINUTE")
	c.AdminRateLimit = count("RATE_LIMIT_ADMIN_PER_MINUTE")
	for _, p := range strings.Split(get("TRUSTED_PROXIES"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, err := netip.ParsePrefix(p); err != nil {
				fail("TRUSTED_PROXIES", "%q is not a CIDR prefix such as 10.0.0.0/8", p)
				continue
			}
			c.TrustedProxies = append(c.TrustedProxies, p)
		}
	}
	c.RetentionPeriod = duration("RETENTION_PERIOD", 0)
	c.RetentionInterval = duration("RETENTION_INTERVAL", time.Second)
	c.EventRetentionPeriod = duration("EVENT_RETENTION_PERIOD", 0)
	c.ShutdownTimeout = duration("SHUTDOWN_TIMEOUT", 0)
	c.RequestTimeout = duration("REQUEST_TIMEOUT", 100*time.Millisecond)
	c.MaxBodyBytes = int64(count("MAX_BODY_BYTES"))
	if c.MaxBodyBytes < 1024 {
		fail("MAX_BODY_BYTES", "must be at least 1024")
	}
	c.PprofAddr = get("PPROF_ADDR")
	if c.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(c.PprofAddr); err != nil {
			fail("PPROF_ADDR", "must be host:port, got %q", c.PprofAddr)
		}
	}
	tracingSettings, tracingErrs := tracing.Load(getenv)
	c.Tracing, errs = tracingSettings, append(errs, tracingErrs...)
	switch v := strings.ToLower(get("REQUIRE_SYNC_REPLICATION")); v {
	case "true", "1":
		c.RequireSync = true
	case "false", "0":
	default:
		fail("REQUIRE_SYNC_REPLICATION", "must be true or false, got %q", v)
	}
	c.Webhooks, errs = loadWebhooks(get, errs)
	if c.RequireSync && c.Database.Kind != store.Postgres && len(errs) == 0 {
		fail("REQUIRE_SYNC_REPLICATION", "needs a PostgreSQL DATABASE_URL; SQLite has no standby")
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return c, nil
}

// loadWebhooks reads the WEBHOOK_ variables, adding what is wrong to errs.
// Secrets are never repeated in an error.
func loadWebhooks(get func(string) string, errs []string) (Webhooks, []string) {
	var w Webhooks
	fail := func(name, format string, args ...any) {
		errs = append(errs, name+": "+fmt.Sprintf(format, args...))
	}
	for _, u := range strings.Split(get("WEBHOOK_URLS"), ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if err := webhook.ParseURL(u); err != nil {
			fail("WEBHOOK_URLS", "%v, got %q", err, u)
			continue
		}
		w.URLs = append(w.URLs, u)
	}
	var secrets []webhook.Secret
	for i, v := range strings.Split(get("WEBHOOK_SECRET"), ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		secret, err := webhook.ParseSecret(v)
		if err != nil {
			fail("WEBHOOK_SECRET", "secret %d %v", i+1, err)
			continue
		}
		secrets = append(secrets, secret)
	}
	if len(secrets) > 0 {
		w.Signer, _ = webhook.NewSigner(secrets...)
	} else if len(w.URLs) > 0 {
		fail("WEBHOOK_SECRET", "required with WEBHOOK_URLS: whsec_ and the base64 of 24 to 64 random bytes")
	}
	if d, err := time.ParseDuration(get("WEBHOOK_TIMEOUT")); err != nil || d < 100*time.Millisecond || d > 5*time.Minute {
		fail("WEBHOOK_TIMEOUT", "must be a duration from 100ms to 5m such as 10s, got %q", get("WEBHOOK_TIMEOUT"))
	} else {
		w.Timeout = d
	}
	if n, err := strconv.Atoi(get("WEBHOOK_CONCURRENCY")); err != nil || n < 1 || n > 1000 {
		fail("WEBHOOK_CONCURRENCY", "must be a whole number from 1 to 1000, got %q", get("WEBHOOK_CONCURRENCY"))
	} else {
		w.Concurrency = n
	}
	schedule, err := webhook.ParseSchedule(get("WEBHOOK_RETRY_SCHEDULE"))
	if err != nil {
		fail("WEBHOOK_RETRY_SCHEDULE", "%v", err)
	}
	w.Schedule = schedule
	return w, errs
}

// envOrDefault returns the variable's value, or its documented default.
func envOrDefault(getenv func(string) string, name string) string {
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return v
	}
	for _, e := range envVars {
		if e.name == name {
			return e.def
		}
	}
	panic("config: undocumented variable " + name)
}

// printEnvUsage lists every variable with its default.
func printEnvUsage(w io.Writer) {
	fmt.Fprintln(w, "Environment variables:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, e := range envVars {
		def := e.def
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", e.name, def, e.help)
	}
	tw.Flush()
}
