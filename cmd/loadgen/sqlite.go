package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// With -store sqlite the service runs on its embedded store, and the
// baseline sends the store's own INSERT and conditional UPDATE straight
// through modernc.org/sqlite, each statement alone and prepared, on a file
// of its own opened with the store's settings, on one connection as the
// store writes on one (-sqlite-conns 0 gives one per worker, which is
// faster while it lasts but stalls statements for seconds and fails some
// with SQLITE_BUSY; see docs/benchmarks.md, "SQLite").

// sqliteOptions are the flags of the SQLite comparison.
type sqliteOptions struct {
	conns   int      // the baseline's open connections; 0: one per worker
	pragmas []string // the baseline's pragmas that differ from the store's
}

// connections is how many connections the baseline opens for workers.
func (o sqliteOptions) connections(workers int) int {
	if o.conns == 0 {
		return workers
	}
	return o.conns
}

func sqliteFlags(fs *flag.FlagSet, o *sqliteOptions) func() {
	fs.IntVar(&o.conns, "sqlite-conns", 1, "with -store sqlite: the baseline's open connections, as the store's writer has one; 0: one per worker (-c)")
	pragmas := fs.String("sqlite-pragma", "", "with -store sqlite: the baseline's pragmas in place of the store's, comma-separated, e.g. synchronous(FULL)")
	return func() {
		if *pragmas != "" {
			o.pragmas = strings.Split(*pragmas, ",")
		}
	}
}

// checkSQLite refuses what the SQLite comparison cannot do.
func checkSQLite(o options) error {
	switch {
	case o.server == "":
		return errors.New("-store sqlite needs -server: the service's database is a file loadgen makes")
	case o.seed > 0 || o.scale > 0:
		return errors.New("-store sqlite goes without -seed and -scale")
	case slices.Contains(o.phases, phaseRedeem):
		return errors.New("-store sqlite runs the create and pairs phases, not redeem")
	}
	return nil
}

// runSQLite runs every phase against the service on SQLite and the driver
// baseline, taking turns, as run does for PostgreSQL.
func runSQLite(ctx context.Context, o options, out io.Writer) (err error) {
	o.checkpoint = false // a PostgreSQL CHECKPOINT; SQLite checkpoints its WAL itself
	b := &bench{o: o, out: out}
	defer b.close()
	if b.workDir, err = os.MkdirTemp("", "loadgen-sqlite-"); err != nil {
		return err
	}
	if b.lite, err = openBaseline(ctx, filepath.Join(b.workDir, "baseline.db"), o); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	keyFile, secret, err := newKeys(b.workDir)
	if err != nil {
		return err
	}
	b.dbURL = "sqlite:" + filepath.Join(b.workDir, "service.db")
	baseURL, err := b.startServer(ctx, keyFile, secret)
	if err != nil {
		return err
	}
	b.svc = newServiceClient(baseURL, secret, o.concurrency, o.client == "raw")
	if err := b.svc.waitReady(ctx, 30*time.Second); err != nil {
		return err
	}
	conns := o.sqlite.connections(o.concurrency)
	fmt.Fprintf(out, "SQLite: service on its embedded store; baseline: the store's statements through the driver, %d connections, pragmas %s\n",
		conns, strings.Join(o.sqlite.pragmas, " "))
	fmt.Fprintf(out, "settings: concurrency %d, %s per run, %d rounds, LOG_LEVEL=%s, server env %s\n",
		o.concurrency, o.duration, o.rounds, o.logLevel, strings.Join(o.serverEnv, " "))
	fmt.Fprintln(out, "the baseline runs inside loadgen: its CPU per operation is the loadgen column")
	fmt.Fprintln(out)
	_, err = b.pass(ctx, "SQLite")
	return err
}

// liteBaseline is the baseline's database and the store's two statements,
// prepared as the service's store prepares them.
type liteBaseline struct {
	db             *sql.DB
	insert, redeem *sql.Stmt
}

func (l *liteBaseline) Close() error { return l.db.Close() } // closes the statements too

// openBaseline creates the baseline's database with the store's migrations,
// then opens it through the driver alone.
func openBaseline(ctx context.Context, path string, o options) (*liteBaseline, error) {
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	err = st.Migrate(ctx)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", sqlite.DSN(path, o.sqlite.pragmas...))
	if err != nil {
		return nil, err
	}
	conns := o.sqlite.connections(o.concurrency)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	l := &liteBaseline{db: db}
	insert, _ := sqlite.InsertStatement(tokens.Token{})
	redeem, _ := sqlite.RedeemStatement("", nil, time.Time{})
	if l.insert, err = db.PrepareContext(ctx, insert); err == nil {
		l.redeem, err = db.PrepareContext(ctx, redeem)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return l, nil
}

// sqliteDriver is the SQLite baseline: per pair, the store's INSERT and its
// conditional UPDATE, each its own statement and commit.
func (b *bench) sqliteDriver() driver {
	l := b.lite
	return driver{
		name: targetBaseline,
		create: func(ctx context.Context, w *worker) (issued, error) {
			t := w.baselineToken()
			_, args := sqlite.InsertStatement(t)
			if _, err := l.insert.ExecContext(ctx, args...); err != nil {
				return issued{}, err
			}
			return issued{id: t.ID, hash: t.TicketHash}, nil
		},
		redeem: func(ctx context.Context, w *worker, it issued) error {
			_, args := sqlite.RedeemStatement(it.id, it.hash, time.Now())
			rows, err := l.redeem.QueryContext(ctx, args...)
			if err != nil {
				return err
			}
			matched := rows.Next()
			if err := rows.Close(); err != nil {
				return err
			}
			if !matched {
				return errors.New("redeem: the conditional update matched no row")
			}
			return rows.Err()
		},
	}
}
