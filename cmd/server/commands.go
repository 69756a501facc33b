package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

func keygen(_ context.Context, fs *flag.FlagSet, args []string, _ func(string) string, stdout, _ io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	pem, err := tokens.EncodePEM(tokens.GenerateKey())
	if err != nil {
		return err
	}
	_, err = stdout.Write(pem)
	return err
}

// configure parses a subcommand's flags, then loads the configuration and
// the logger that the subcommands using the database start from.
func configure(fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) (Config, zerolog.Logger, error) {
	if err := fs.Parse(args); err != nil {
		return Config{}, zerolog.Logger{}, err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return Config{}, zerolog.Logger{}, err
	}
	cfg.LogFormat = resolveLogFormat(cfg.LogFormat, stdout)
	return cfg, newLogger(cfg, stdout), nil
}

func migrate(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	cfg, log, err := configure(fs, args, getenv, stdout)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info().Msg("migrations applied")
	return nil
}

func healthcheck(ctx context.Context, fs *flag.FlagSet, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	ready := fs.Bool("ready", false, "check /readyz (database reachable) instead of /healthz")
	target := fs.String("url", "", "URL to check (default: http://127.0.0.1:PORT/healthz, PORT from HTTP_ADDR)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for an answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		addr := envOrDefault(getenv, "HTTP_ADDR")
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("HTTP_ADDR: must be host:port or :port, got %q", addr)
		}
		path := "/healthz"
		if *ready {
			path = "/readyz"
		}
		*target = "http://" + net.JoinHostPort("127.0.0.1", port) + path
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s answered %s", *target, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
