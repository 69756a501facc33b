package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// webhookSink is a webhook receiver that acknowledges every delivery at
// once (204), as a receiver that queues deliveries for later would, and
// counts them. It does not check signatures: the cost measured is the
// service's.
type webhookSink struct {
	srv       *http.Server
	url       string
	delivered atomic.Int64
}

func startWebhookSink() (*webhookSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &webhookSink{url: "http://" + ln.Addr().String() + "/webhooks"}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Method != http.MethodPost || r.Header.Get("webhook-signature") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		s.delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *webhookSink) close() { s.srv.Close() }

// webhookEnv is the service's environment delivering to s.
func (s *webhookSink) env() []string {
	key := make([]byte, 32)
	rand.Read(key)
	return []string{"WEBHOOK_URLS=" + s.url, "WEBHOOK_SECRET=whsec_" + base64.StdEncoding.EncodeToString(key)}
}

// undeliveredSQL counts what the service still has to deliver: events not
// yet relayed, and delivery jobs not finished.
const undeliveredSQL = `
SELECT (SELECT count(*) FROM events AS e, webhook_relay AS r WHERE (e.xid, e.seq) > (r.xid, r.seq))
	+ (SELECT count(*) FROM river_job WHERE state NOT IN ('completed', 'discarded', 'cancelled'))`

// drainLimit is the longest a run's deliveries may take to finish.
const drainLimit = 5 * time.Minute

// drain waits until b's service has delivered everything, and returns how
// long that took.
func (b *bench) drain(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for {
		var left int64
		if err := b.admin.QueryRow(ctx, undeliveredSQL).Scan(&left); err != nil {
			return 0, fmt.Errorf("webhook backlog: %w", err)
		}
		if left == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > drainLimit {
			return 0, fmt.Errorf("webhooks: %d deliveries left %s after the run", left, drainLimit)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runWebhooks compares the service with webhooks off and on: each on its
// own database with its own service, the second delivering every event to
// a local sink, taking turns run by run. After each run with webhooks on,
// the next run waits until every delivery of it finished, so that no
// delivery work falls into a run of the other service; the waits are
// printed, as the delivery lag a burst of that size leaves behind.
func runWebhooks(ctx context.Context, o options, out io.Writer) error {
	o.baseline = false // both services' floor is the same database
	o.app = false
	off, err := newBench(ctx, o, out)
	if err != nil {
		return err
	}
	defer off.close()
	wo := o
	wo.dbName, wo.cpuProfile, wo.serverLog, wo.webhookSink = o.dbName+"_webhooks", "", "", true
	on, err := newBench(ctx, wo, out)
	if err != nil {
		return err
	}
	defer on.close()
	off.describeMachine()
	fmt.Fprintf(out, "webhooks: %s without against %s delivering every event to a local receiver, taking turns run by run\n",
		o.dbName, wo.dbName)
	var drains []time.Duration
	settle := func(ctx context.Context, b *bench) error {
		if b != on {
			return nil
		}
		d, err := b.drain(ctx)
		drains = append(drains, d)
		return err
	}
	if err := takeTurns(ctx, o, out, [2]*bench{off, on}, [2]string{"off", "on"},
		[2]string{"webhooks off", "webhooks on"}, settle); err != nil {
		return err
	}
	var events int64
	if err := on.admin.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&events); err != nil {
		return err
	}
	fmt.Fprintf(out, "webhooks on: %d events recorded, %d deliveries acknowledged by the receiver; after each run, deliveries finished within %v\n",
		events, on.hooks.delivered.Load(), roundDurations(drains))
	return nil
}

func roundDurations(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond).String()
	}
	return out
}
