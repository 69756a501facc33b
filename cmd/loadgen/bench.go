package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// bench is one benchmark session: the database, the service under test and
// the baseline's direct connection to the same database.
type bench struct {
	o         options
	out       io.Writer
	sink      *otlpSink       // with -otlp-sink
	hooks     *webhookSink    // the webhooks bench of -webhooks
	dbURL     string          // the bench database
	admin     *pgxpool.Pool   // setup, COPY and statistics; not timed
	base      *postgres.Store // the baseline: the service's own SQL through pgx
	lite      *liteBaseline   // with -store sqlite, the baseline's database instead
	ticketer  *tokens.Ticketer
	workDir   string
	svc       *serviceClient
	proc      *exec.Cmd
	pid       int
	app       *exec.Cmd // the application-style baseline, with -app
	appPid    int
	appClient *serviceClient
	pprof     string // host:port of the service's pprof listener, when profiling
	logFile   *os.File
	fresh     bool    // empty the table before each timed run (only the bench database loadgen created)
	fastest   float64 // the highest rate seen, to size redeem runs
	profiled  bool
}

func newBench(ctx context.Context, o options, out io.Writer) (_ *bench, err error) {
	// Only a database loadgen created itself is ever emptied.
	b := &bench{o: o, out: out, pid: o.pid, fresh: o.server != ""}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.workDir, err = os.MkdirTemp("", "loadgen-"); err != nil {
		return nil, err
	}
	b.dbURL = o.databaseURL
	if o.server != "" {
		if b.dbURL, err = createDatabase(ctx, o.adminURL, o.dbName); err != nil {
			return nil, err
		}
	}
	// The baseline gets one connection per concurrent worker, so it is never
	// short of connections; the service's pool is whatever it configures.
	if b.base, err = postgres.Open(ctx, withParam(b.dbURL, "pool_max_conns", strconv.Itoa(o.concurrency)), postgres.Options{}); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if err := b.base.MigrateTo(ctx, o.migrateTo); err != nil {
		return nil, fmt.Errorf("migrate the bench database: %w", err)
	}
	if b.admin, err = pgxpool.New(ctx, withParam(b.dbURL, "pool_max_conns", "2")); err != nil {
		return nil, err
	}
	if o.fillfactor > 0 {
		if _, err := b.admin.Exec(ctx, fmt.Sprintf("ALTER TABLE sign_in_tokens SET (fillfactor = %d)", o.fillfactor)); err != nil {
			return nil, fmt.Errorf("-fillfactor: %w", err)
		}
	}
	if o.setupSQL != "" {
		if _, err := b.admin.Exec(ctx, o.setupSQL); err != nil {
			return nil, fmt.Errorf("-setup-sql: %w", err)
		}
	}

	keyFile, secret := o.signingKey, o.key
	if o.server != "" {
		if keyFile, secret, err = newKeys(b.workDir); err != nil {
			return nil, err
		}
	}
	if keyFile != "" {
		data, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		privs, err := tokens.ParsePEM(data)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		ks, err := tokens.NewKeySet(privs...)
		if err != nil {
			return nil, err
		}
		b.ticketer = tokens.NewTicketer(ks, o.issuer, time.Now)
	}

	baseURL := strings.TrimRight(o.url, "/")
	if o.server != "" {
		if baseURL, err = b.startServer(ctx, keyFile, secret); err != nil {
			return nil, err
		}
	}
	b.svc = newServiceClient(baseURL, secret, o.concurrency, o.client == "raw")
	if err := b.svc.waitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	if o.app {
		if err := b.startApp(ctx); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// newKeys writes a new signing key into dir and makes up a secret key, for
// a service loadgen starts.
func newKeys(dir string) (keyFile, secret string, err error) {
	keyFile, secret = filepath.Join(dir, "signing.pem"), "sk_bench_"+tokens.RandomBase62(40)
	pem, err := tokens.EncodePEM(tokens.GenerateKey())
	if err != nil {
		return "", "", err
	}
	return keyFile, secret, os.WriteFile(keyFile, pem, 0o600)
}

// tables are the tables the targets write, emptied before each run: the
// tokens, the service's audit trail, and the app's table.
func (b *bench) tables() string {
	if b.app != nil {
		return "sign_in_tokens, events, " + appTable
	}
	return "sign_in_tokens, events"
}

// createDatabase drops and creates the bench database, and returns its URL.
func createDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("-admin-url: %w", err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop database %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("-admin-url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// withParam returns the database URL with one query parameter set.
func withParam(dbURL, name, value string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL // the connection attempt reports it
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServer starts the server binary on the bench database with rate
// limits off, and returns its base URL.
func (b *bench) startServer(ctx context.Context, keyFile, secret string) (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	dbURL := b.dbURL
	if b.o.pool > 0 {
		dbURL = withParam(dbURL, "pool_max_conns", strconv.Itoa(b.o.pool))
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HTTP_ADDR=" + addr,
		"DATABASE_URL=" + dbURL,
		"DATA_DIR=" + b.workDir,
		"SECRET_KEYS=" + secret,
		"SIGNING_KEY_FILE=" + keyFile,
		"ISSUER=" + b.o.issuer,
		"LOG_LEVEL=" + b.o.logLevel,
		"RATE_LIMIT_REDEEM_PER_MINUTE=0",
		"RATE_LIMIT_ADMIN_PER_MINUTE=0",
	}
	if b.o.cpuProfile != "" {
		if b.pprof, err = freeAddr(); err != nil {
			return "", err
		}
		env = append(env, "PPROF_ADDR="+b.pprof)
	}
	if b.o.otlpSink {
		if b.sink, err = startOTLPSink(); err != nil {
			return "", err
		}
		env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+b.sink.url, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
	}
	if b.o.webhookSink {
		if b.hooks, err = startWebhookSink(); err != nil {
			return "", err
		}
		env = append(env, b.hooks.env()...)
	}
	env = append(env, b.o.serverEnv...)

	logPath := b.o.serverLog
	if logPath == "" {
		logPath = filepath.Join(b.workDir, "server.log")
	}
	if b.logFile, err = os.Create(logPath); err != nil {
		return "", err
	}
	cmd := exec.Command(b.o.server, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = b.logFile, b.logFile
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("-server: %w", err)
	}
	b.proc, b.pid = cmd, cmd.Process.Pid
	return "http://" + addr, nil
}

// close stops the service it started and releases everything.
func (b *bench) close() {
	for _, p := range []*exec.Cmd{b.app, b.proc} {
		if p != nil {
			stop(p)
		}
	}
	if b.logFile != nil {
		b.logFile.Close()
	}
	if b.sink != nil {
		fmt.Fprintf(b.out, "OTLP sink: %d exports, %d bytes\n", b.sink.exports.Load(), b.sink.received.Load())
		b.sink.close()
	}
	if b.hooks != nil {
		b.hooks.close()
	}
	if b.base != nil {
		b.base.Close()
	}
	if b.admin != nil {
		b.admin.Close()
	}
	if b.lite != nil {
		b.lite.Close()
	}
	if b.workDir != "" && b.o.serverLog == "" {
		os.RemoveAll(b.workDir)
	}
}

// stop ends a process it started: SIGTERM, then SIGKILL after 25 s.
func stop(p *exec.Cmd) {
	p.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(25 * time.Second):
		p.Process.Kill()
		<-done
	}
}

// describeMachine prints what the figures were measured on.
func (b *bench) describeMachine() {
	ctx := context.Background()
	var version, syncCommit, shared, fsync string
	err := b.admin.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('synchronous_commit'),
		current_setting('shared_buffers'), current_setting('fsync')`).Scan(&version, &syncCommit, &shared, &fsync)
	if err != nil {
		version = "unknown (" + err.Error() + ")"
	}
	pool := "service default"
	if b.o.pool > 0 {
		pool = strconv.Itoa(b.o.pool)
	}
	fmt.Fprintf(b.out, "machine:  %d CPUs (%s), %s, PostgreSQL %s (synchronous_commit=%s, fsync=%s, shared_buffers=%s)\n",
		runtime.NumCPU(), cpuModel(), runtime.Version(), version, syncCommit, fsync, shared)
	rate := "as fast as possible"
	if b.o.rate > 0 {
		rate = fmt.Sprintf("%.0f/s", b.o.rate)
	}
	fmt.Fprintf(b.out, "settings: concurrency %d, %s per run, %d rounds, rate %s, service pool %s, LOG_LEVEL=%s\n\n",
		b.o.concurrency, b.o.duration, b.o.rounds, rate, pool, b.o.logLevel)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}

// serviceClient sends the service's requests over one shared transport that
// keeps a connection per worker open.
type serviceClient struct {
	base   string
	secret string
	raw    bool // one minimal HTTP/1.1 connection per worker instead of net/http
	auth   []string
	json   []string
	client *http.Client
}

func newServiceClient(base, secret string, conns int, raw bool) *serviceClient {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &serviceClient{base: base, secret: secret, raw: raw, auth: []string{"Bearer " + secret},
		json: []string{"application/json"}, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// connect returns what one worker sends its requests through: its own raw
// connection, or the shared net/http client.
func (c *serviceClient) connect() (poster, error) {
	if c.raw {
		return newRawConn(c.base, c.secret)
	}
	return httpPoster{c}, nil
}

// httpPoster sends requests through net/http's client.
type httpPoster struct{ c *serviceClient }

func (p httpPoster) post(path string, body []byte, resp *[]byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, p.c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header["Authorization"] = p.c.auth
	req.Header["Content-Type"] = p.c.json
	res, err := p.c.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	*resp, err = readAll(res.Body, (*resp)[:0])
	return res.StatusCode, err
}

func (httpPoster) close() {}

// readAll appends r's contents to buf, growing it only when full.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func (c *serviceClient) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
		res, err := c.client.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(res.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("service at %s not ready after %s: %v", c.base, within, last)
}
