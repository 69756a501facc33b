package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/riverqueue/river"
)

// Queue is the River queue deliveries run in.
const Queue = "webhooks"

// JobKind is the River kind of a delivery job.
const JobKind = "webhook_delivery"

// deliveryArgs is one delivery job: one event to one URL. Body is the
// exact payload, kept as bytes (base64 in the job's JSON) so that every
// attempt sends, and signs, the same bytes.
type deliveryArgs struct {
	EventID string `json:"event_id"`
	URL     string `json:"url"`
	Body    []byte `json:"body"`
	// Prior is how many attempts were made before the job's first: the
	// relay's own first attempt (see relay), so the schedule goes on from
	// there.
	Prior int `json:"prior,omitempty"`
}

// Kind names the job kind for River.
func (deliveryArgs) Kind() string { return JobKind }

// maxResponseBytes is how much of a receiver's answer is read: enough to
// let the connection be reused, never an unbounded read.
const maxResponseBytes = 64 << 10

// Observer counts what becomes of delivery attempts.
type Observer interface {
	// Delivered counts an attempt a receiver acknowledged with a 2xx.
	Delivered()
	// AttemptFailed counts an attempt that failed and will be retried.
	AttemptFailed()
	// Discarded counts a delivery given up after its last attempt failed.
	Discarded()
}

// worker attempts deliveries for River.
type worker struct {
	river.WorkerDefaults[deliveryArgs]
	client   *http.Client
	signer   Signer
	timeout  time.Duration
	observer Observer
	now      func() time.Time
}

// Timeout bounds each attempt; River cancels the attempt's context then.
func (w *worker) Timeout(*river.Job[deliveryArgs]) time.Duration { return w.timeout }

// Work makes one attempt. A 2xx acknowledges; anything else, a timeout or a
// refused connection is an error, and River retries by the schedule.
func (w *worker) Work(ctx context.Context, job *river.Job[deliveryArgs]) error {
	err := w.attempt(ctx, job.Args)
	switch {
	case err == nil:
		w.observer.Delivered()
	case job.Attempt >= job.MaxAttempts:
		w.observer.Discarded()
	default:
		w.observer.AttemptFailed()
	}
	return err
}

func (w *worker) attempt(ctx context.Context, a deliveryArgs) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL, bytes.NewReader(a.Body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", a.EventID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "signin-tokens-webhooks")
	req.Header.Set("webhook-id", a.EventID)
	ts := w.now()
	req.Header.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
	req.Header.Set("webhook-signature", w.signer.Signature(a.EventID, ts, a.Body))
	resp, err := w.client.Do(req)
	if err != nil {
		// The error names the URL; River keeps it in the job's errors.
		return fmt.Errorf("webhook %s to %s: %w", a.EventID, redact(a.URL), unwrapURLError(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s to %s: answered %d", a.EventID, redact(a.URL), resp.StatusCode)
	}
	return nil
}

// redact is u without user information or query, which may hold secrets.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User, p.RawQuery, p.Fragment = nil, "", ""
	return p.String()
}

// unwrapURLError drops url.Error's wrapping, which repeats the full URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newHTTPClient is the client deliveries use: no redirects followed (a 3xx
// is not an acknowledgement), at most concurrency connections kept per
// receiver.
func newHTTPClient(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = concurrency
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
