package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	apihttp "github.com/signin-tokens/signin-tokens/internal/http"
	"github.com/signin-tokens/signin-tokens/internal/metrics"
	"github.com/signin-tokens/signin-tokens/internal/store"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
	"github.com/signin-tokens/signin-tokens/internal/tracing"
)

// resolveLogFormat turns LOG_FORMAT=auto into console when stdout is a
// terminal (a person is reading) and json otherwise (a log collector is).
func resolveLogFormat(format string, stdout io.Writer) string {
	if format != "auto" {
		return format
	}
	if isTerminal(stdout) {
		return "console"
	}
	return "json"
}

// isTerminal reports whether w is a file open on a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// newLogger writes JSON lines, or console lines (coloured on a terminal)
// when cfg.LogFormat, already resolved, is console.
func newLogger(cfg Config, stdout io.Writer) zerolog.Logger {
	out := stdout
	if cfg.LogFormat == "console" {
		out = zerolog.ConsoleWriter{Out: stdout, TimeFormat: time.RFC3339, NoColor: !isTerminal(stdout)}
	}
	lvl, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger()
}

// openStore opens the configured store and applies its migrations. tp, nil
// when tracing is off, traces PostgreSQL's group commits.
func openStore(ctx context.Context, cfg Config, log zerolog.Logger, tp trace.TracerProvider) (tokens.Store, error) {
	st, loc, err := store.Open(ctx, cfg.DatabaseURL, store.Options{DataDir: cfg.DataDir,
		Writers: cfg.DatabaseWriters, RequireSync: cfg.RequireSync, TracerProvider: tp})
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate %s: %w", loc, err)
	}
	log.Info().Stringer("store", loc).Msg("database ready")
	if cfg.RequireSync {
		if err := st.Ping(ctx); err != nil {
			// Not fatal: the primary is rechecked every second, and a
			// failover or a fixed setting makes the service ready again.
			log.Error().Err(err).Msg("REQUIRE_SYNC_REPLICATION: not ready, and refusing writes, until the primary replicates synchronously")
		}
	}
	return st, nil
}

func serve(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	cfg, log, err := configure(fs, args, getenv, stdout)
	if err != nil {
		return err
	}
	keys, err := loadKeySet(cfg, log)
	if err != nil {
		return err
	}
	secretKeys, devKey, err := loadSecretKeys(cfg)
	if err != nil {
		return err
	}
	codes, err := loadCodes(cfg)
	if err != nil {
		return err
	}
	// Only a set directory goes in: a nil *userdir.Directory inside the
	// interface would not compare equal to nil, and the service would call it.
	var users tokens.UserDirectory
	// Tracing is off without an endpoint: then tp stays nil and nothing
	// below creates a span or builds an attribute.
	sdkProvider, err := tracing.Start(ctx, cfg.Tracing, versionString())
	if err != nil {
		return err
	}
	var tp trace.TracerProvider
	if sdkProvider != nil {
		tp = sdkProvider
		log.Info().Str("endpoint", cfg.Tracing.Endpoint).Str("protocol", cfg.Tracing.Protocol).
			Str("sampler", cfg.Tracing.SamplerName).Msg("tracing on")
	}
	if cfg.Users != nil {
		users = cfg.Users
		if tp != nil {
			users = cfg.Users.Traced(tp)
		}
	}

	// Every goroutine serve starts runs in tasks, and serve returns only once
	// all of them stopped and the store is closed, also when start-up fails
	// half way. A task that fails ends ctx, which shuts the rest down.
	ctx, cancel := context.WithCancel(ctx)
	tasks, ctx := errgroup.WithContext(ctx)
	// The store sits behind a gate: a network database that is down at start
	// is retried in the background while /readyz says so.
	gate := store.NewGate()
	defer func() {
		cancel()
		tasks.Wait()
		gate.Close() // does nothing once shutdown closed it
		if sdkProvider != nil {
			// Last, once nothing makes spans: flushes what is still queued.
			flushCtx, cancelFlush := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancelFlush()
			if err := sdkProvider.Shutdown(flushCtx); err != nil {
				log.Warn().Err(err).Msg("tracing: spans not flushed at exit")
			}
		}
	}()
	stats := metrics.New()
	// opened starts what needs the open store: webhook deliveries, only
	// with WEBHOOK_URLS set.
	opened := func(st tokens.Store) {
		if len(cfg.Webhooks.URLs) > 0 && ctx.Err() == nil {
			tasks.Go(func() error { return runWebhooks(ctx, cfg.Webhooks, st, stats, log) })
		}
	}
	if cfg.Database.Kind == store.Postgres {
		tasks.Go(func() error {
			if st := connectWithRetry(ctx, cfg, log, gate, tp); st != nil {
				opened(st)
			}
			return nil
		})
	} else {
		st, err := openStore(ctx, cfg, log, tp)
		if err != nil {
			return fmt.Errorf("DATABASE_URL: %w", err)
		}
		gate.Open(st)
		opened(st)
	}

	stats.WatchPool(gate)
	var serviceStore tokens.Store = gate
	var tracer trace.Tracer
	if tp != nil {
		serviceStore = store.NewTraced(gate, cfg.Database.Kind, tp)
		tracer = tp.Tracer(apihttp.TracerName)
	}
	service := tokens.NewService(tokens.Config{
		Observer:         stats,
		Store:            serviceStore,
		Tracer:           tracer,
		Ticketer:         tokens.NewTicketer(keys, cfg.Issuer, time.Now),
		Codes:            codes,
		CodeMaxAttempts:  cfg.CodeMaxAttempts,
		Users:            users,
		DefaultExpiresIn: cfg.DefaultExpiresIn,
		MaxExpiresIn:     cfg.MaxExpiresIn,
		Redirects:        cfg.Redirects,
	})
	api := apihttp.NewServer(apihttp.Config{
		Service:        service,
		SecretKeys:     secretKeys,
		SignInURL:      cfg.SignInURL,
		PublicURL:      cfg.PublicURL,
		PageObserver:   stats.SignInPage,
		Logger:         log,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		RequestTimeout: cfg.RequestTimeout,
		Observer:       stats.ObserveRequest,
		Extra:          map[string]http.Handler{"/metrics": stats.Handler()},
		TracerProvider: tp,
		RateLimits: apihttp.RateLimits{RedeemPerAddress: cfg.RedeemRateLimit,
			AdminPerKey: cfg.AdminRateLimit, CodePerUser: cfg.CodeRateLimit, TrustedProxies: cfg.TrustedProxies},
	})

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	var pprofLn net.Listener
	if cfg.PprofAddr != "" {
		if pprofLn, err = net.Listen("tcp", cfg.PprofAddr); err != nil {
			ln.Close()
			return fmt.Errorf("PPROF_ADDR: %w", err)
		}
	}
	srv := apihttp.NewHTTPServer(cfg.HTTPAddr, api)
	if devKey {
		announceDevKey(log, stdout, cfg.LogFormat == "console", ln.Addr(), secretKeys[0])
	}
	log.Info().Str("addr", ln.Addr().String()).Str("version", versionString()).
		Int("signing_keys", len(keys.Keys())).Str("kid", keys.Signer().ID).Msg("listening")
	if pprofLn != nil {
		tasks.Go(func() error {
			servePprof(ctx, pprofLn, log)
			return nil
		})
	}
	if cfg.RetentionPeriod > 0 || cfg.EventRetentionPeriod > 0 {
		tasks.Go(func() error {
			sweep(ctx, gate, retention{tokens: cfg.RetentionPeriod, events: cfg.EventRetentionPeriod}, cfg.RetentionInterval, log)
			return nil
		})
	}
	tasks.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})

	<-ctx.Done() // a signal, or a task failed
	log.Info().Dur("timeout", cfg.ShutdownTimeout).Msg("shutting down: finishing in-flight requests")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelShutdown()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		srv.Close()
	}
	cancel()
	taskErr := tasks.Wait()
	gate.CloseWithin(shutdownCtx)
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	if taskErr != nil {
		return taskErr
	}
	log.Info().Msg("stopped")
	return nil
}

// announceDevKey tells a new user the generated key and how to use it. Only
// the generated development key is ever logged; configured keys never are.
// The curl line must paste as it is: in JSON logs it is the "try" field; in
// console logs, which would quote and escape it, it is printed bare on the
// line after the log line.
func announceDevKey(log zerolog.Logger, stdout io.Writer, console bool, addr net.Addr, key string) {
	host := "localhost"
	_, port, _ := net.SplitHostPort(addr.String())
	base := "http://" + net.JoinHostPort(host, port)
	curl := fmt.Sprintf(`curl -s -X POST %s/v1/sign_in_tokens -H "Authorization: Bearer %s" -H "Content-Type: application/json" -d '{"user_id":"user_123"}'`, base, key)
	ev := log.Warn()
	if !ev.Enabled() {
		return
	}
	ev = ev.Str("secret_key", key)
	if !console {
		ev = ev.Str("try", curl)
	}
	ev.Msg("using a generated development secret key (kept in DATA_DIR); set SECRET_KEYS in production")
	if console {
		fmt.Fprintln(stdout, curl)
	}
}

// connectWithRetry opens and migrates the store, retrying with capped
// exponential backoff until it succeeds or ctx ends, and returns it (nil
// when ctx ended first).
func connectWithRetry(ctx context.Context, cfg Config, log zerolog.Logger, gate *store.Gate, tp trace.TracerProvider) tokens.Store {
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		st, err := openStore(ctx, cfg, log, tp)
		if err == nil {
			gate.Open(st)
			return st
		}
		gate.Fail(err)
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("database unreachable; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, 15*time.Second)
	}
}

// retention is how long the sweep keeps what it deletes; 0 keeps forever.
type retention struct {
	tokens time.Duration // after a token expired or finished
	events time.Duration // after an event was recorded
}

// sweep deletes finished and expired tokens past their retention period,
// events past theirs, and idempotency keys past their window, each in small
// batches of its own so no statement holds locks for long.
func sweep(ctx context.Context, st tokens.Store, keep retention, every time.Duration, log zerolog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var tokensDeleted, eventsDeleted int
		if keep.tokens > 0 {
			tokensDeleted = sweepBatches(ctx, log, "tokens", func(limit int) (int, error) {
				return st.DeleteFinished(ctx, now.Add(-keep.tokens), limit)
			})
		}
		if keep.events > 0 {
			eventsDeleted = sweepBatches(ctx, log, "events", func(limit int) (int, error) {
				return st.DeleteEvents(ctx, now.Add(-keep.events), limit)
			})
		}
		keysDeleted := sweepBatches(ctx, log, "idempotency keys", func(limit int) (int, error) {
			return st.DeleteIdempotencyKeys(ctx, now.Add(-tokens.IdempotencyWindow), limit)
		})
		if tokensDeleted > 0 || keysDeleted > 0 || eventsDeleted > 0 {
			log.Info().Int("deleted", tokensDeleted).Int("idempotency_keys_deleted", keysDeleted).
				Int("events_deleted", eventsDeleted).Msg("retention sweep")
		}
	}
}

// sweepBatches runs del with a batch limit until it deletes less than a
// batch, and returns how many rows it deleted.
func sweepBatches(ctx context.Context, log zerolog.Logger, what string, del func(limit int) (int, error)) int {
	const batch = 500
	total := 0
	for ctx.Err() == nil {
		n, err := del(batch)
		if err != nil {
			if !errors.Is(err, tokens.ErrUnavailable) || ctx.Err() == nil {
				log.Warn().Err(err).Str("what", what).Msg("retention sweep failed")
			}
			break
		}
		total += n
		if n < batch {
			break
		}
	}
	return total
}
