package main

// The application-style baseline: what an application would write if it kept
// sign-in tokens itself. A table with the same columns, a primary key and one
// index for listing by user; one INSERT per create and one conditional UPDATE
// per redemption; a plain net/http handler around each, with encoding/json.
// It runs as a process of its own (this binary, started with -app-serve), so
// its CPU is read from /proc like the service's, and it is driven by the same
// lean raw-HTTP client: the comparison is then of what sits behind the HTTP
// request, which is what the service replaces in an application. Next to it,
// the raw pgx baseline (the service's own statements, no HTTP) is the floor.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

const (
	targetApp     = "app"
	appTable      = "app_tokens"
	appCreatePath = "/tokens"
	appRedeemPath = "/redeem"
)

// appSchemaSQL is the application's table: the service's token columns, a
// primary key, one index for listing a user's tokens newest first, and the
// defaults an application would leave (fillfactor 100).
const appSchemaSQL = `
CREATE TABLE IF NOT EXISTS app_tokens (
    id           text        PRIMARY KEY,
    user_id      text        NOT NULL,
    org_id       text,
    status       text        NOT NULL,
    ticket_hash  bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    revoked_at   timestamptz,
    redirect_url text,
    metadata     jsonb
);
CREATE INDEX IF NOT EXISTS app_tokens_user_id_created_at_idx ON app_tokens (user_id, created_at DESC)`

const appInsertSQL = `
INSERT INTO app_tokens (id, user_id, status, ticket_hash, created_at, updated_at, expires_at)
VALUES ($1, $2, 'pending', $3, $4, $4, $5)`

const appRedeemSQL = `
UPDATE app_tokens SET status = 'accepted', accepted_at = now(), updated_at = now()
WHERE id = $1 AND ticket_hash = $2 AND status = 'pending' AND expires_at > now()
RETURNING user_id`

// tokenApp is the application's HTTP side.
type tokenApp struct{ pool *pgxpool.Pool }

// serveApp runs the application on addr against the database dbURL until
// ctx ends: the body of a loadgen process started with -app-serve.
func serveApp(ctx context.Context, addr, dbURL string) error {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	a := &tokenApp{pool: pool}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+appCreatePath, a.create)
	mux.HandleFunc("POST "+appRedeemPath, a.redeem)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := pool.Ping(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (a *tokenApp) create(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UserID string `json:"user_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.UserID == "" {
		http.Error(w, "user_id required", http.StatusBadRequest)
		return
	}
	// The service's own id scheme (time-ordered), so both primary keys grow
	// alike; the secret is the part of the ticket only the holder knows.
	now := time.Now()
	id, secret := tokens.KindSignIn.NewID(now), randomSecret()
	hash := sha256.Sum256([]byte(secret))
	if _, err := a.pool.Exec(r.Context(), appInsertSQL, id, req.UserID, hash[:], now, now.Add(30*24*time.Hour)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeAppJSON(w, map[string]string{"id": id, "token": id + "." + secret})
}

func (a *tokenApp) redeem(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ticket string `json:"ticket"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "ticket required", http.StatusBadRequest)
		return
	}
	id, secret, _ := strings.Cut(req.Ticket, ".")
	hash := sha256.Sum256([]byte(secret))
	var userID string
	err := a.pool.QueryRow(r.Context(), appRedeemSQL, id, hash[:]).Scan(&userID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		http.Error(w, "ticket invalid, used or expired", http.StatusBadRequest)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeAppJSON(w, map[string]string{"id": id, "user_id": userID, "status": "accepted"})
}

func writeAppJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// randomSecret is 32 random bytes, base64url.
func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// startApp creates the application's table in the bench database and starts
// the application as a process of its own, with one pool connection per
// concurrent worker.
func (b *bench) startApp(ctx context.Context) error {
	if _, err := b.admin.Exec(ctx, appSchemaSQL); err != nil {
		return fmt.Errorf("app table: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-app-serve", addr, "-app-db",
		withParam(b.dbURL, "pool_max_conns", fmt.Sprint(b.o.concurrency)))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the app: %w", err)
	}
	b.app, b.appPid = cmd, cmd.Process.Pid
	b.appClient = newServiceClient("http://"+addr, "", b.o.concurrency, true)
	return b.appClient.waitReady(ctx, 30*time.Second)
}

// appDriver talks HTTP to the application, with the client the service gets.
func (b *bench) appDriver() driver {
	d := httpDriver(targetApp, b.appClient, appCreatePath, appRedeemPath)
	d.pid, d.table, d.prepare = b.appPid, appTable, b.prepareApp
	return d
}

// prepareApp stores n pending tokens in the application's table for a
// redeem run, and returns their tickets; not timed.
func (b *bench) prepareApp(ctx context.Context, n int) ([]issued, error) {
	now := time.Now().UTC()
	items := make([]issued, n)
	rows := make([][]any, n)
	for i := range n {
		id, secret := tokens.KindSignIn.NewID(now), randomSecret()
		hash := sha256.Sum256([]byte(secret))
		items[i] = issued{ticket: id + "." + secret}
		rows[i] = []any{id, fmt.Sprintf("user_%d", i%100_000), "pending", hash[:], now, now, now.Add(time.Hour)}
	}
	_, err := b.admin.CopyFrom(ctx, pgx.Identifier{appTable},
		[]string{"id", "user_id", "status", "ticket_hash", "created_at", "updated_at", "expires_at"}, pgx.CopyFromRows(rows))
	return items, err
}
