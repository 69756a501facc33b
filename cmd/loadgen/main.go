// Command loadgen measures the sign-in token service against the floor under
// it: the service's own INSERT and conditional UPDATE issued straight through
// pgx, at the same concurrency, in the same run. It prints, per phase, the
// throughput and latency of both and the ratio service/baseline.
//
// By default it creates a fresh database, starts the server binary given by
// -server on it and stops it at the end; -url targets a service that is
// already running instead (see -h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// Phase names, in the order they run.
const (
	phaseCreate = "create"
	phaseRedeem = "redeem"
	phasePairs  = "pairs"
)

// options are the command's flags.
type options struct {
	otlpSink    bool   // discard the service's trace exports in-process
	server      string // server binary to start; empty with url
	url         string // a running service instead
	key         string // its secret key (with url)
	signingKey  string // its SIGNING_KEY_FILE (with url), to prepare tickets
	issuer      string
	pid         int    // its process id (with url), for CPU and RSS
	adminURL    string // a database loadgen may create the bench database from
	dbName      string
	databaseURL string // the service's database (with url)

	concurrency int
	duration    time.Duration
	rounds      int
	phases      []string
	rate        float64 // fixed request rate; 0 is as fast as possible
	half        bool    // also run each phase at half the service's peak
	baseline    bool
	pool        int // the service's pool_max_conns; 0 keeps its default
	logLevel    string
	seed        int // rows COPYed before a second pass
	scale       int // rows of the seeded database in the interleaved comparison
	cpuProfile  string
	profPhase   string
	serverLog   string
	serverEnv   []string
	client      string // raw or net/http
	checkpoint  bool   // CHECKPOINT before each timed run
	store       string // postgres or sqlite
	sqlite      sqliteOptions
	webhooks    bool   // compare webhooks off and on
	webhookSink bool   // deliver the service's webhooks to a local receiver
	app         bool   // run the application-style baseline
	migrateTo   int64  // migrate the bench database up to this version; 0: the newest
	fillfactor  int    // set on sign_in_tokens before the runs; 0 keeps the migrations'
	setupSQL    string // run on the bench database after the migrations
	appServe    string // run as the application-style baseline on this address
	appDB       string // its database URL
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", "", "server binary to start on a fresh database (e.g. bin/server)")
	fs.StringVar(&o.url, "url", "", "base URL of a running service, instead of -server")
	fs.StringVar(&o.key, "key", "", "with -url: a secret key the service accepts")
	fs.StringVar(&o.signingKey, "signing-key", "", "with -url: the service's SIGNING_KEY_FILE, to prepare redeem tickets")
	fs.StringVar(&o.issuer, "issuer", "signin-tokens", "the service's ISSUER")
	fs.IntVar(&o.pid, "pid", 0, "with -url: the service's process id, for CPU time and peak RSS")
	fs.StringVar(&o.adminURL, "admin-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "with -server: a database to create the bench database from")
	fs.StringVar(&o.dbName, "db", "bench", "with -server: the bench database, dropped and created anew")
	fs.StringVar(&o.databaseURL, "database-url", "", "with -url: the service's DATABASE_URL; tokens are added to it, none removed: use one kept for benchmarks")
	fs.IntVar(&o.concurrency, "c", 16, "concurrent requests (HTTP connections; baseline pool connections)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "duration of each timed run")
	fs.IntVar(&o.rounds, "rounds", 2, "runs of each phase per target, interleaved baseline/service")
	phases := fs.String("phases", "create,redeem,pairs", "phases to run: create, redeem, pairs")
	fs.Float64Var(&o.rate, "rate", 0, "fixed rate in operations (pairs) per second; 0: as fast as possible")
	fs.BoolVar(&o.half, "half", true, "after each phase, run service and baseline at half the service's peak rate")
	fs.BoolVar(&o.baseline, "baseline", true, "run the pgx baseline (the service's own statements)")
	fs.BoolVar(&o.app, "app", true, "run the application-style baseline: a minimal table and HTTP app of its own, driven\nby the same client (see app.go)")
	fs.Int64Var(&o.migrateTo, "migrate-version", 0, "migrate the bench database up to this version only (e.g. 7, for a release\nbefore migration 00009 given as -server); 0: the newest")
	fs.IntVar(&o.fillfactor, "fillfactor", 0, "set this fillfactor on sign_in_tokens before the runs; 0 keeps the migrations'")
	fs.StringVar(&o.setupSQL, "setup-sql", "", "SQL to run on the bench database after the migrations, e.g. to try a schema\nchange (\"DROP INDEX events_created_at_idx\")")
	fs.StringVar(&o.appServe, "app-serve", "", "internal: serve the application-style baseline on this address")
	fs.StringVar(&o.appDB, "app-db", "", "internal: with -app-serve, its database URL")
	fs.IntVar(&o.pool, "pool", 0, "with -server: the service's pool_max_conns; 0 keeps the service's default")
	fs.StringVar(&o.logLevel, "log-level", "info", "with -server: the service's LOG_LEVEL")
	fs.IntVar(&o.seed, "seed", 0, "then COPY this many tokens (e.g. 1000000) and run every phase again")
	fs.IntVar(&o.scale, "scale", 0, "with -server: instead of the passes, compare an empty table with one of this many\ntokens, each in its own database and service, taking turns run by run")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "with -server: write a CPU profile of the service during -profile-phase")
	fs.StringVar(&o.profPhase, "profile-phase", phasePairs, "phase whose first service run is profiled")
	fs.StringVar(&o.serverLog, "server-log", "", "with -server: file for the service's log (default: in a temporary directory)")
	fs.BoolVar(&o.checkpoint, "checkpoint", true, "CHECKPOINT before each timed run, so none falls inside it; each run then also pays\nthe full-page images of the first change to every page after it")
	fs.StringVar(&o.client, "client", "raw", "HTTP client: raw (one minimal HTTP/1.1 connection per worker, the leanest) or net/http")
	env := fs.String("server-env", "", "with -server: extra NAME=value pairs for the service, comma-separated")
	fs.BoolVar(&o.otlpSink, "otlp-sink", false, "with -server: receive the service's OTLP/HTTP trace exports and discard them\n(sets OTEL_EXPORTER_OTLP_ENDPOINT; pick the sampler with -server-env OTEL_TRACES_SAMPLER=...)")
	fs.StringVar(&o.store, "store", "postgres", "the service's store: postgres, or sqlite (its embedded store, against the driver; see sqlite.go)")
	sqliteParsed := sqliteFlags(fs, &o.sqlite)
	fs.BoolVar(&o.webhooks, "webhooks", false, "with -server: compare the service with webhooks off and on (every event delivered to a local\nreceiver answering 204), each on its own database and service, taking turns run by run; no baseline")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	sqliteParsed()
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case phaseCreate, phaseRedeem, phasePairs:
			o.phases = append(o.phases, p)
		case "":
		default:
			return o, fmt.Errorf("-phases: unknown phase %q (create, redeem, pairs)", p)
		}
	}
	if *env != "" {
		o.serverEnv = strings.Split(*env, ",")
	}
	switch {
	case o.appServe != "":
		return o, nil
	case (o.server == "") == (o.url == ""):
		return o, errors.New("give one of -server (start the service) or -url (a running service)")
	case o.url != "" && (o.key == "" || o.databaseURL == ""):
		return o, errors.New("-url needs -key and -database-url")
	case o.url != "" && o.signingKey == "" && slices.Contains(o.phases, phaseRedeem):
		return o, errors.New("-url with the redeem phase needs -signing-key")
	case o.concurrency < 1 || o.rounds < 1 || o.duration <= 0:
		return o, errors.New("-c, -rounds and -d must be positive")
	case o.client != "raw" && o.client != "net/http":
		return o, fmt.Errorf("-client: raw or net/http, got %q", o.client)
	case len(o.phases) == 0:
		return o, errors.New("-phases names no phase")
	case o.scale > 0 && (o.server == "" || o.seed > 0 || o.rate > 0):
		return o, errors.New("-scale needs -server, and goes without -seed and -rate")
	case o.webhooks && (o.server == "" || o.seed > 0 || o.rate > 0 || o.scale > 0):
		return o, errors.New("-webhooks needs -server, and goes without -seed, -rate and -scale")
	case o.store == "sqlite":
		return o, checkSQLite(o)
	case o.store != "postgres":
		return o, fmt.Errorf("-store: postgres or sqlite, got %q", o.store)
	}
	return o, nil
}

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args[1:], stderr)
	if err != nil {
		return err
	}
	if o.appServe != "" {
		return serveApp(ctx, o.appServe, o.appDB)
	}
	if o.scale > 0 {
		o.app = false // the scale comparison keeps to the service and its pgx baseline
		return runScale(ctx, o, stdout)
	}
	if o.webhooks {
		return runWebhooks(ctx, o, stdout)
	}
	if o.store == "sqlite" {
		return runSQLite(ctx, o, stdout)
	}
	b, err := newBench(ctx, o, stdout)
	if err != nil {
		return err
	}
	defer b.close()
	b.describeMachine()

	title := "empty table"
	if !b.fresh {
		title = "the table as found"
	}
	empty, err := b.pass(ctx, title)
	if err != nil {
		return err
	}
	if o.seed > 0 {
		if err := b.seed(ctx, o.seed); err != nil {
			return err
		}
		seeded, err := b.pass(ctx, fmt.Sprintf("%s tokens stored", thousands(o.seed)))
		if err != nil {
			return err
		}
		b.compareScale(empty, seeded)
		if err := b.explainList(ctx); err != nil {
			return err
		}
	}
	return nil
}

// thousands formats n with thin separators, e.g. 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
