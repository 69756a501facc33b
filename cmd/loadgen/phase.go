package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// issued is a token ready to redeem: the service needs its ticket, the
// baseline its id and ticket hash.
type issued struct {
	ticket string
	id     string
	hash   []byte
}

// worker is one concurrent client; its buffers are reused between requests.
type worker struct {
	conn poster // to the service; nil for the baseline
	n    int    // requests sent, also picks the user id
	user []byte
	body []byte
	resp []byte
	lat  []time.Duration
	ops  int
	errs int
	err  error // the first error
}

// userID is one of 100,000 user ids, as the seeded data uses.
func (w *worker) userID(seq int) []byte {
	w.user = append(w.user[:0], "user_"...)
	w.user = strconv.AppendInt(w.user, int64(seq%100_000), 10)
	return w.user
}

// baselineToken is a new pending token for a baseline to store: no ticket
// is signed, the hash of its id stands in for the ticket's.
func (w *worker) baselineToken() tokens.Token {
	id := tokens.KindSignIn.NewID(time.Now())
	sum := sha256.Sum256([]byte(id))
	now := time.Now().UTC().Truncate(time.Millisecond)
	return tokens.Token{ID: id, UserID: string(w.userID(w.n)), Status: tokens.StatusPending,
		TicketHash: sum[:], CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)}
}

// driver does the phases' operations against one target.
type driver struct {
	name    string
	connect func() (poster, error) // nil for a target without one
	create  func(ctx context.Context, w *worker) (issued, error)
	redeem  func(ctx context.Context, w *worker, it issued) error
	prepare func(ctx context.Context, n int) ([]issued, error) // tokens for a redeem run
	pid     int                                                // the process whose CPU is the target's own; 0: none
	table   string                                             // the table its redemptions update
}

const (
	targetService  = "service"
	targetBaseline = "baseline"
)

var (
	createPath = "/v1/sign_in_tokens"
	redeemPath = "/v1/tickets/redeem"
	tokenField = []byte(`"token":"`)
)

// serviceDriver talks HTTP to the service.
func (b *bench) serviceDriver() driver {
	d := httpDriver(targetService, b.svc, createPath, redeemPath)
	d.pid, d.table, d.prepare = b.pid, "sign_in_tokens", b.prepare
	return d
}

// httpDriver creates with POST createPath {"user_id"} and redeems with POST
// redeemPath {"ticket"}, the ticket read from the create's "token" field.
func httpDriver(name string, c *serviceClient, createPath, redeemPath string) driver {
	return driver{
		name:    name,
		connect: c.connect,
		create: func(ctx context.Context, w *worker) (issued, error) {
			w.body = append(w.body[:0], `{"user_id":"`...)
			w.body = append(w.body, w.userID(w.n)...)
			w.body = append(w.body, `"}`...)
			status, err := w.conn.post(createPath, w.body, &w.resp)
			if err != nil {
				return issued{}, err
			}
			if status != http.StatusOK {
				return issued{}, fmt.Errorf("create: %d %s", status, clip(w.resp))
			}
			i := bytes.Index(w.resp, tokenField)
			if i < 0 {
				return issued{}, fmt.Errorf("create: no token in %s", clip(w.resp))
			}
			rest := w.resp[i+len(tokenField):]
			end := bytes.IndexByte(rest, '"')
			if end < 0 {
				return issued{}, fmt.Errorf("create: no token in %s", clip(w.resp))
			}
			return issued{ticket: string(rest[:end])}, nil
		},
		redeem: func(ctx context.Context, w *worker, it issued) error {
			w.body = append(w.body[:0], `{"ticket":"`...)
			w.body = append(w.body, it.ticket...)
			w.body = append(w.body, `"}`...)
			status, err := w.conn.post(redeemPath, w.body, &w.resp)
			if err != nil {
				return err
			}
			if status != http.StatusOK {
				return fmt.Errorf("redeem: %d %s", status, clip(w.resp))
			}
			return nil
		},
	}
}

// baselineDriver issues the service's own statements through its pgx store,
// with nothing of HTTP, JSON, authentication, signing or logging around them.
func (b *bench) baselineDriver() driver {
	if b.lite != nil {
		return b.sqliteDriver()
	}
	st := b.base
	return driver{
		name:    targetBaseline,
		prepare: b.prepare,
		table:   "sign_in_tokens",
		create: func(ctx context.Context, w *worker) (issued, error) {
			t := w.baselineToken()
			if _, err := st.Create(ctx, tokens.Creation{Token: t}); err != nil {
				return issued{}, err
			}
			return issued{id: t.ID, hash: t.TicketHash}, nil
		},
		redeem: func(ctx context.Context, w *worker, it issued) error {
			now := time.Now().UTC().Truncate(time.Millisecond)
			_, change, err := st.Redeem(ctx, it.id, it.hash, now, nil)
			if err == nil && change != tokens.Changed {
				err = errors.New("redeem: the conditional update matched no row")
			}
			return err
		},
	}
}

func clip(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// result is one timed run of one phase against one target.
type result struct {
	phase, target string
	ops, errs     int
	elapsed       time.Duration
	lat           []time.Duration // sorted
	svcCPU        time.Duration   // the target's process (service or app), utime+stime
	pgCPU         time.Duration   // the bench database's backends
	genCPU        time.Duration   // this process
	allCPU        time.Duration   // the whole machine, others' work included
	rssKB         int64           // the target process's VmHWM after the run
	hot           hotStats        // the updates of the target's table during the run
	groups        float64         // the service's write groups during the run
	grouped       float64         // and the writes they carried
	err           error
	short         bool // ran out of prepared tickets
}

func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ops) / r.elapsed.Seconds()
}

// otherCores is how many cores, on average, went to work other than this
// run's: the noise of a shared machine.
func (r result) otherCores() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	other := r.allCPU - r.svcCPU - r.pgCPU - r.genCPU
	return max(other.Seconds(), 0) / r.elapsed.Seconds()
}

// perOp is a CPU time per operation in microseconds.
func (r result) perOp(d time.Duration) float64 {
	if r.ops == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(r.ops)
}

// runOnce runs one phase against one target for the configured duration, at
// rate operations per second or, when rate is 0, as fast as it goes.
func (b *bench) runOnce(ctx context.Context, phase string, d driver, rate float64, profile string) (result, error) {
	if b.fresh {
		if _, err := b.admin.Exec(ctx, "TRUNCATE "+b.tables()+" CASCADE"); err != nil {
			return result{}, err
		}
	}
	var items []issued
	if phase == phaseRedeem {
		n := b.ticketsNeeded(rate)
		var err error
		if items, err = d.prepare(ctx, n); err != nil {
			return result{}, fmt.Errorf("prepare %d tickets: %w", n, err)
		}
	}
	// Start every run from the same state: no checkpoint due mid-run.
	if b.o.checkpoint {
		if _, err := b.admin.Exec(ctx, "CHECKPOINT"); err != nil {
			return result{}, err
		}
	}

	var next atomic.Int64 // ticket index, or schedule slot at a fixed rate
	var done sync.WaitGroup
	workers := make([]*worker, b.o.concurrency)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var profErr chan error
	if profile != "" {
		profErr = make(chan error, 1)
		go func() { profErr <- b.fetchProfile(ctx, profile) }()
	}
	var groupsBefore, writesBefore float64
	if d.name == targetService {
		groupsBefore, writesBefore = b.svc.groupCounters(ctx)
	}
	hotBefore := b.hotStats(ctx, d.table)
	pgBefore := b.backendCPU(ctx)
	svcBefore := processCPU(d.pid)
	genBefore := selfCPU()
	allBefore := machineCPU()
	start := time.Now()
	end := start.Add(b.o.duration)
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	for i := range workers {
		w := &worker{n: i * 7919, lat: make([]time.Duration, 0, 4096)}
		if d.connect != nil {
			conn, err := d.connect()
			if err != nil {
				return result{}, err
			}
			w.conn = conn
			defer conn.close()
		}
		workers[i] = w
		done.Add(1)
		go func() {
			defer done.Done()
			for runCtx.Err() == nil { // interrupted: stop early
				began, slot := time.Now(), int64(-1)
				if interval > 0 {
					// Open loop: latency counts from when the request was due,
					// so a slow answer cannot hide the queue behind it.
					slot = next.Add(1) - 1
					began = start.Add(time.Duration(slot) * interval)
					if !began.Before(end) {
						return
					}
					if wait := time.Until(began); wait > 0 {
						time.Sleep(wait)
					}
				} else if !began.Before(end) {
					return
				}
				var err error
				switch phase {
				case phaseCreate:
					_, err = d.create(runCtx, w)
				case phaseRedeem:
					i := int(slot) // at a fixed rate the slot picks the ticket
					if interval == 0 {
						i = int(next.Add(1) - 1)
					}
					if i >= len(items) {
						return
					}
					err = d.redeem(runCtx, w, items[i])
				case phasePairs:
					var it issued
					if it, err = d.create(runCtx, w); err == nil {
						err = d.redeem(runCtx, w, it)
					}
				}
				w.n++
				if err != nil {
					w.errs++
					if w.err == nil {
						w.err = err
					}
					if w.errs > 100 && w.errs > w.ops {
						return // failing throughout; the report says why
					}
					continue
				}
				w.ops++
				w.lat = append(w.lat, time.Since(began))
			}
		}()
	}
	done.Wait()
	elapsed := time.Since(start)
	r := result{phase: phase, target: d.name, elapsed: elapsed}
	r.genCPU = selfCPU() - genBefore
	r.allCPU = machineCPU() - allBefore
	r.svcCPU = processCPU(d.pid) - svcBefore
	r.pgCPU = b.backendCPU(ctx).since(pgBefore)
	r.rssKB = peakRSS(d.pid)
	for _, w := range workers {
		r.ops += w.ops
		r.errs += w.errs
		r.lat = append(r.lat, w.lat...)
		if r.err == nil {
			r.err = w.err
		}
	}
	if phase != phaseCreate {
		r.hot = b.hotSince(ctx, d.table, hotBefore, int64(r.ops))
	}
	if d.name == targetService {
		groups, writes := b.svc.groupCounters(ctx)
		r.groups, r.grouped = groups-groupsBefore, writes-writesBefore
	}
	if phase == phaseRedeem && int(next.Load()) >= len(items) {
		r.short = true
	}
	slices.Sort(r.lat)
	if profErr != nil {
		if err := <-profErr; err != nil {
			fmt.Fprintln(b.out, "profile:", err)
		}
	}
	return r, nil
}

// ticketsNeeded guesses how many tickets a redeem run can use: the
// fastest rate seen so far, with room to spare.
func (b *bench) ticketsNeeded(rate float64) int {
	if rate <= 0 {
		rate = max(b.fastest*2, 4000)
	}
	return int(rate*b.o.duration.Seconds()*1.2) + 1000
}

// fetchProfile saves a CPU profile of the service taken during the run.
func (b *bench) fetchProfile(ctx context.Context, path string) error {
	secs := max(int(b.o.duration.Seconds())-1, 1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.pprof, secs), nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof answered %s", res.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
