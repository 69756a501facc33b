// Package webhook sends every event of the audit trail to the configured
// URLs, signed as the Standard Webhooks specification says, at least once,
// through River job queues on the store's own database.
//
// The events table already is a transactional outbox: each change writes
// its events in its own statement (PostgreSQL's grouped writes included),
// so an event exists exactly when its change committed. Rather than make
// every write a longer transaction that also inserts River jobs (more round
// trips on the hot path, and in the way of group commit), a relay tails the
// log with the same stable cursor GET /v1/events uses, and in one
// transaction inserts a delivery job per (event, URL) and moves a cursor
// row of its own past those events. So a job exists if and only if its
// event committed, each is enqueued once, and a crash between the two
// loses nothing: the transaction commits both or neither. The store
// serializes relays (PostgreSQL locks the cursor row, FOR UPDATE SKIP
// LOCKED, so of several replicas one relays and the others skip the
// round; SQLite has one writer).
//
// The relay makes each first attempt itself, before that transaction, and
// enqueues River jobs only for the deliveries still to do; with receivers
// that answer, no job row is written at all. One process relays at a time
// (HoldRelayLease). River then retries: one job per (event, URL), so a
// dead endpoint's retries never hold back another's; at most Concurrency
// attempts at once, each bounded by Timeout; failures retried by Schedule;
// jobs left running by a killed process rescued once they are older than
// Timeout plus a margin.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/rs/zerolog"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Config is how deliveries are made.
type Config struct {
	URLs        []string
	Signer      Signer
	Timeout     time.Duration // of each attempt
	Concurrency int           // attempts at once, in each replica
	Schedule    Schedule
	Observer    Observer
	// Encode is the JSON body of an event: the object GET /v1/events shows.
	Encode func(tokens.Event) ([]byte, error)
	Logger zerolog.Logger
	// PollOnly polls for jobs instead of listening for them (SQLite).
	PollOnly bool
}

// Outbox is the events log as the relay reads it, through a store whose
// transactions are TTx.
type Outbox[TTx any] interface {
	// PeekEvents answers the relay's cursor and up to limit events after
	// it, oldest first, without a transaction.
	PeekEvents(ctx context.Context, limit int) (after string, events []tokens.Event, err error)
	// RelayEvents moves the cursor from after past events (a batch
	// PeekEvents answered) in one transaction with enqueue, if enqueue
	// succeeds; false when another relay holds or moved the cursor.
	RelayEvents(ctx context.Context, after string, events []tokens.Event, enqueue func(ctx context.Context, tx TTx) error) (bool, error)
	// HoldRelayLease tells whether this process is the database's one
	// relay, taking the lease when nobody holds it.
	HoldRelayLease(ctx context.Context) (bool, error)
}

// Timings of the relay and of rescue.
const (
	// relayBatch is the most events one relay transaction carries.
	relayBatch = 200
	// relayInterval is how often the relay looks for new events when the
	// last look found a partial batch: it bounds the delay before a first
	// attempt, and costs one indexed read per interval when idle.
	relayInterval = 200 * time.Millisecond
	// relayRetry is the pause after a relay that failed (the database is
	// away, say): the events stay in the log and are relayed later. It is
	// also how often a process that is not the relay asks for the lease.
	relayRetry = time.Second
	// sidelined is how long a URL whose first attempt failed gets no more
	// first attempts from the relay: its events go straight to River, so a
	// receiver that hangs holds the relay up once, not on every batch.
	sidelined = 30 * time.Second
	// rescueMargin is added to Timeout before a job still marked running is
	// taken for the leftover of a killed process and retried: an attempt
	// that is still alive has ended by then.
	rescueMargin = 10 * time.Second
	// fetchPerJob is the least time between two fetches of jobs, per
	// attempt that may run at once (see fetchCooldown).
	fetchPerJob = 500 * time.Microsecond
	// stopGrace is how long attempts in flight at shutdown may finish
	// before they are canceled (and retried after the restart).
	stopGrace = 5 * time.Second
)

// fetchCooldown is the least time between two fetches of jobs. River
// fetches at most as many jobs as it has free workers, then waits this long
// (100ms by default, which would cap 10 workers at 100 jobs a second). Half
// a millisecond per worker lets a replica fetch up to 2,000 jobs a second
// whatever the concurrency, in fetches of up to concurrency jobs: fewer,
// larger fetches cost the database less per job (docs/benchmarks.md).
func fetchCooldown(concurrency int) time.Duration {
	return max(time.Duration(concurrency)*fetchPerJob, time.Millisecond)
}

// Check validates c, naming what is wrong.
func (c Config) Check() error {
	switch {
	case len(c.URLs) == 0:
		return errors.New("no URL")
	case c.Timeout <= 0:
		return errors.New("no attempt timeout")
	case c.Concurrency < 1:
		return errors.New("concurrency below 1")
	case len(c.Schedule) == 0:
		return errors.New("no retry schedule")
	case c.Observer == nil || c.Encode == nil:
		return errors.New("no observer or encoder")
	}
	return nil
}

// Run delivers events until ctx ends: River's client works the jobs, and a
// relay enqueues them from outbox. It returns once both stopped.
func Run[TTx any](ctx context.Context, driver riverdriver.Driver[TTx], outbox Outbox[TTx], c Config) error {
	if err := c.Check(); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	w := &worker{client: newHTTPClient(c.Concurrency), signer: c.Signer,
		timeout: c.Timeout, observer: c.Observer, now: time.Now}
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	rc := &river.Config{
		Queues:               map[string]river.QueueConfig{Queue: {MaxWorkers: c.Concurrency}},
		Workers:              workers,
		RetryPolicy:          retryPolicy{schedule: c.Schedule, now: time.Now},
		MaxAttempts:          c.Schedule.MaxAttempts(),
		JobTimeout:           c.Timeout,
		RescueStuckJobsAfter: c.Timeout + rescueMargin,
		Logger:               slog.New(zerolog.NewSlogHandler(c.Logger.Level(zerolog.WarnLevel))),
		PollOnly:             c.PollOnly,
		FetchCooldown:        fetchCooldown(c.Concurrency),
	}
	if c.PollOnly {
		// Each fetch is a write on SQLite: twice a second leaves the one
		// writer to the API nearly always.
		rc.FetchPollInterval = 500 * time.Millisecond
	}
	client, err := river.NewClient(driver, rc)
	if err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	// River's own start-up must not end with ctx's cancel at shutdown
	// before Stop is called; Stop ends it.
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("webhooks: start River: %w", err)
	}
	hosts := make([]string, len(c.URLs))
	for i, u := range c.URLs {
		hosts[i] = redact(u)
	}
	c.Logger.Info().Strs("urls", hosts).Int("concurrency", c.Concurrency).Dur("timeout", c.Timeout).
		Dur("retries_for", c.Schedule.Total()).Msg("webhooks on")

	relay(ctx, outbox, client, w, c)

	stopCtx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		cancelCtx, cancel := context.WithTimeout(context.Background(), stopGrace)
		defer cancel()
		if err := client.StopAndCancel(cancelCtx); err != nil {
			return fmt.Errorf("webhooks: stop River: %w", err)
		}
	}
	return nil
}

// relay hands new events on until ctx ends, while this process holds the
// relay lease. Each round it peeks at the next batch and makes the first
// attempt of every (event, URL) itself, at most Concurrency at once; then,
// in the transaction that moves the cursor past the batch, it enqueues a
// River job only for the deliveries that are not done: a failed first
// attempt becomes a job that starts at the schedule's second attempt, and
// a sidelined URL's delivery an ordinary job. With receivers that answer, no job row is ever written, which is
// most of what deliveries cost the database (docs/benchmarks.md,
// "Webhooks"). A crash after a first attempt and before the cursor moved
// sends that event again after the restart: at least once, as promised.
func relay[TTx any](ctx context.Context, outbox Outbox[TTx], client *river.Client[TTx], w *worker, c Config) {
	r := &relayer{w: w, c: c, sidelined: map[string]time.Time{}}
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n, err := relayRound(ctx, r, outbox, client)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			c.Logger.Warn().Err(err).Msg("webhooks: relaying events failed; retrying")
			wait = relayRetry
		case n < 0: // another process relays
			wait = relayRetry
		case n == relayBatch:
			wait = 0 // more are waiting
		default:
			wait = relayInterval
		}
	}
}

// relayer is the relay's state between rounds.
type relayer struct {
	w *worker
	c Config
	// sidelined holds, for each URL whose first attempt failed lately, when
	// the relay makes first attempts to it again.
	sidelined map[string]time.Time
}

// delivery names one event to one URL.
type delivery struct{ eventID, url string }

// relayRound relays one batch; it answers how many events it relayed, or
// -1 when another process holds the lease.
func relayRound[TTx any](ctx context.Context, r *relayer, outbox Outbox[TTx], client *river.Client[TTx]) (int, error) {
	lead, err := outbox.HoldRelayLease(ctx)
	if err != nil || !lead {
		return -1, err
	}
	after, peeked, err := outbox.PeekEvents(ctx, relayBatch)
	if err != nil || len(peeked) == 0 {
		return 0, err
	}
	attempted := r.firstAttempts(ctx, peeked)
	if ctx.Err() != nil {
		return 0, ctx.Err() // the cursor stays: after a restart these go again
	}
	enqueue := func(ctx context.Context, tx TTx) error {
		var params []river.InsertManyParams
		for _, e := range peeked {
			var body []byte
			for _, u := range r.c.URLs {
				delivered, tried := attempted[delivery{e.ID, u}]
				if delivered {
					continue
				}
				if body == nil {
					var err error
					if body, err = r.c.Encode(e); err != nil {
						return fmt.Errorf("encode %s: %w", e.ID, err)
					}
				}
				params = append(params, r.job(deliveryArgs{EventID: e.ID, URL: u, Body: body}, tried))
			}
		}
		if len(params) == 0 {
			return nil
		}
		_, err := client.InsertManyTx(ctx, tx, params)
		return err
	}
	moved, err := outbox.RelayEvents(ctx, after, peeked, enqueue)
	if err != nil || !moved {
		return 0, err
	}
	return len(peeked), nil
}

// job is the River job for a delivery; failed says its first attempt was
// made, and failed, so the job makes the schedule's later attempts only.
func (r *relayer) job(a deliveryArgs, failed bool) river.InsertManyParams {
	opts := &river.InsertOpts{Queue: Queue, MaxAttempts: r.c.Schedule.MaxAttempts()}
	if failed {
		a.Prior = 1
		opts.MaxAttempts--
		opts.ScheduledAt = time.Now().Add(retryPolicy{schedule: r.c.Schedule}.wait(1))
	}
	return river.InsertManyParams{Args: a, InsertOpts: opts}
}

// firstAttempts makes the first attempt of each event to each URL that is
// not sidelined, at most Concurrency at once, and answers which were made
// (present) and which of those a receiver acknowledged (true).
func (r *relayer) firstAttempts(ctx context.Context, events []tokens.Event) map[delivery]bool {
	now := time.Now()
	var urls []string
	for _, u := range r.c.URLs {
		if now.After(r.sidelined[u]) {
			urls = append(urls, u)
		}
	}
	attempted := make(map[delivery]bool, len(events)*len(urls))
	if len(urls) == 0 {
		return attempted
	}
	var mu sync.Mutex
	sem := make(chan struct{}, r.c.Concurrency)
	var wg sync.WaitGroup
	for _, e := range events {
		body, err := r.c.Encode(e)
		if err != nil {
			continue // the enqueue reports it
		}
		for _, u := range urls {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				err := r.w.attempt(ctx, deliveryArgs{EventID: e.ID, URL: u, Body: body})
				mu.Lock()
				defer mu.Unlock()
				attempted[delivery{e.ID, u}] = err == nil
				if err == nil {
					r.w.observer.Delivered()
					return
				}
				r.w.observer.AttemptFailed()
				r.sidelined[u] = time.Now().Add(sidelined)
			}()
		}
	}
	wg.Wait()
	return attempted
}

// ParseURL checks one receiver URL: absolute http or https.
func ParseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	return nil
}
