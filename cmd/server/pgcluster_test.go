package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The failover tests run PostgreSQL clusters of their own, a primary and a
// streaming standby, made with the machine's PostgreSQL 15 binaries and run
// as the postgres OS user on ports of their own. They never touch the
// cluster on 5432. They run only with FAILOVER_TEST=1 (make failover-test).

// pgBinDir holds initdb, pg_ctl and pg_basebackup; PG_BIN_DIR overrides it.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// needFailoverTest skips t unless FAILOVER_TEST=1; once asked for, anything
// it needs that is missing fails the test.
func needFailoverTest(t *testing.T) {
	t.Helper()
	if os.Getenv("FAILOVER_TEST") != "1" {
		t.Skip("a failover test: run it with FAILOVER_TEST=1 (make failover-test)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the failover tests run PostgreSQL as the postgres OS user and need root")
	}
	if _, err := user.Lookup("postgres"); err != nil {
		t.Fatalf("the failover tests need the postgres OS user: %v", err)
	}
	if _, err := os.Stat(filepath.Join(binDirPG(), "pg_ctl")); err != nil {
		t.Fatalf("PostgreSQL binaries (set PG_BIN_DIR): %v", err)
	}
}

func binDirPG() string {
	if d := os.Getenv("PG_BIN_DIR"); d != "" {
		return d
	}
	return pgBinDir
}

// pgCluster is one throwaway PostgreSQL server.
type pgCluster struct {
	t    *testing.T
	name string
	dir  string // data directory
	port int

	paused int // the WAL receiver or sender stopped with SIGSTOP, or 0
}

// asPostgres runs a PostgreSQL binary as the postgres OS user.
func asPostgres(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", filepath.Join(binDirPG(), bin)}, args...)...)
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

// run runs bin as postgres and ends the test if it fails.
func (c *pgCluster) run(bin string, args ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := asPostgres(ctx, bin, args...); err != nil {
		c.t.Fatalf("%s %s: %v\n%s", c.name, bin, err, out)
	}
}

// freePort returns a TCP port nothing listens on now, never 5432.
func freePort(t *testing.T) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port != 5432 {
			return port
		}
	}
}

// url is a URL for one database of c alone.
func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// connect opens a connection to db on c for the test to look.
func (c *pgCluster) connect(db string) *pgx.Conn {
	c.t.Helper()
	return connect(c.t, c.url(db))
}

// start starts c and waits until it accepts connections.
func (c *pgCluster) start() {
	c.t.Helper()
	c.run("pg_ctl", "-D", c.dir, "-l", c.dir+".log", "-w", "-t", "60", "start")
}

// crash stops c the way a crash would: no checkpoint, no goodbye to clients
// or standbys. A WAL sender pauseWALSender stopped dies first, with what it
// had not sent.
func (c *pgCluster) crash() {
	c.t.Helper()
	if c.paused != 0 {
		syscall.Kill(c.paused, syscall.SIGKILL)
		c.paused = 0
	}
	c.run("pg_ctl", "-D", c.dir, "-m", "immediate", "stop")
}

// promote makes the standby c a primary and waits until it accepts writes.
func (c *pgCluster) promote() {
	c.t.Helper()
	c.run("pg_ctl", "-D", c.dir, "-w", "-t", "60", "promote")
}

// stopQuietly stops c if it runs, for cleanup.
func (c *pgCluster) stopQuietly() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := os.Stat(filepath.Join(c.dir, "postmaster.pid")); err != nil {
		return
	}
	asPostgres(ctx, "pg_ctl", "-D", c.dir, "-m", "immediate", "stop")
}

// logTail is the end of c's server log, for failures.
func (c *pgCluster) logTail() string {
	b, _ := os.ReadFile(c.dir + ".log")
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// replicatedPair is a primary and its streaming standby, with a database
// "failover" on both.
type replicatedPair struct {
	primary, standby *pgCluster
	sync             bool
}

// newReplicatedPair creates, starts and connects a primary and a standby
// under a temporary directory owned by postgres; both are stopped and
// removed when t ends, whatever happened. With sync, the primary waits for
// the standby to flush every commit (synchronous_standby_names = '*',
// synchronous_commit = on) before it answers.
func newReplicatedPair(t *testing.T, syncRep bool) *replicatedPair {
	t.Helper()
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	base, err := os.MkdirTemp("", "signin-tokens-failover-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(base, uid, gid); err != nil {
		t.Fatal(err)
	}
	p := &replicatedPair{
		primary: &pgCluster{t: t, name: "primary", dir: filepath.Join(base, "primary"), port: freePort(t)},
		standby: &pgCluster{t: t, name: "standby", dir: filepath.Join(base, "standby"), port: freePort(t)},
		sync:    syncRep,
	}
	t.Cleanup(func() {
		p.standby.resumeWALReceiver()
		p.primary.resumeWALReceiver()
		p.standby.stopQuietly()
		p.primary.stopQuietly()
		if t.Failed() {
			t.Logf("primary log:\n%s\nstandby log:\n%s", p.primary.logTail(), p.standby.logTail())
		}
		os.RemoveAll(base)
	})

	pr := p.primary
	pr.run("initdb", "-D", pr.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	conf := strings.Join([]string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(pr.port),
		"unix_socket_directories = '" + base + "'",
		"wal_level = replica",
		"max_wal_senders = 4",
		"wal_keep_size = '256MB'",
		"hot_standby = on",
		"max_connections = 80",
		"shared_buffers = '32MB'",
		"log_min_messages = warning",
		"",
	}, "\n")
	appendFile(t, filepath.Join(pr.dir, "postgresql.conf"), conf)
	pr.start()
	admin := pr.connect("postgres")
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE failover"); err != nil {
		t.Fatal(err)
	}

	sb := p.standby
	sb.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(pr.port), "-U", "postgres",
		"-D", sb.dir, "-R", "-X", "stream", "-c", "fast")
	appendFile(t, filepath.Join(sb.dir, "postgresql.auto.conf"),
		"port = "+strconv.Itoa(sb.port)+"\ncluster_name = 'standby'\n")
	sb.start()
	waitFor(t, 30*time.Second, "the standby streaming", func() bool {
		var n int
		err := admin.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'`).Scan(&n)
		return err == nil && n == 1
	})
	if syncRep {
		// ALTER SYSTEM writes the primary's postgresql.auto.conf alone: the
		// standby, once promoted, has no standby of its own to wait for.
		for _, q := range []string{
			`ALTER SYSTEM SET synchronous_standby_names = '*'`,
			`ALTER SYSTEM SET synchronous_commit = 'on'`,
			`SELECT pg_reload_conf()`,
		} {
			if _, err := admin.Exec(context.Background(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		waitFor(t, 30*time.Second, "the standby synchronous", func() bool {
			var n int
			err := admin.QueryRow(context.Background(),
				`SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'`).Scan(&n)
			return err == nil && n == 1
		})
	}
	return p
}

// serviceURL names both servers, the primary first, and asks for the one
// that accepts writes, as a client of an HA cluster would.
func (p *replicatedPair) serviceURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/failover?target_session_attrs=read-write&sslmode=disable",
		p.primary.port, p.standby.port)
}

// pidOf runs a query for one process id on c; 0 if there is none.
func (c *pgCluster) pidOf(query string) int {
	c.t.Helper()
	conn := c.connect("postgres")
	defer conn.Close(context.Background())
	var pid int
	if err := conn.QueryRow(context.Background(), query).Scan(&pid); err != nil {
		c.t.Fatal(err)
	}
	return pid
}

// pauseWALReceiver stops the standby's WAL receiver with SIGSTOP: the
// standby then confirms nothing, as a standby on a stalled disk. What the
// primary sent meanwhile waits in the socket and arrives on resume.
func (c *pgCluster) pauseWALReceiver() {
	c.t.Helper()
	c.pause(c.pidOf(`SELECT coalesce(max(pid), 0) FROM pg_stat_wal_receiver`), "WAL receiver")
}

// pauseWALSender stops the primary's WAL sender with SIGSTOP: the standby
// gets nothing more, as behind a network that stalled; crash kills it.
func (c *pgCluster) pauseWALSender() {
	c.t.Helper()
	c.pause(c.pidOf(`SELECT coalesce(max(pid), 0) FROM pg_stat_replication`), "WAL sender")
}

func (c *pgCluster) pause(pid int, what string) {
	c.t.Helper()
	if pid == 0 {
		c.t.Fatalf("%s has no %s", c.name, what)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
	c.paused = pid
}

// resumeWALReceiver continues a WAL receiver (or sender) paused.
func (c *pgCluster) resumeWALReceiver() {
	if c.paused != 0 {
		syscall.Kill(c.paused, syscall.SIGCONT)
		c.paused = 0
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
