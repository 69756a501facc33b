package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Outcomes of a webhook delivery attempt, the values of the outcome label.
const (
	WebhookDelivered = "delivered" // the receiver answered 2xx
	WebhookFailed    = "failed"    // any other answer, a timeout or no connection: retried later
	WebhookDiscarded = "discarded" // the last attempt failed: given up
)

// WebhookBacklogFunc reads how far deliveries are behind.
type WebhookBacklogFunc func(context.Context) (tokens.WebhookBacklog, error)

// WebhookDeliveries counts delivery attempts by outcome; it is the
// webhook package's Observer.
type WebhookDeliveries struct{ attempts *prometheus.CounterVec }

// Delivered counts an acknowledged attempt.
func (d *WebhookDeliveries) Delivered() { d.attempts.WithLabelValues(WebhookDelivered).Inc() }

// AttemptFailed counts a failed attempt that will be retried.
func (d *WebhookDeliveries) AttemptFailed() { d.attempts.WithLabelValues(WebhookFailed).Inc() }

// Discarded counts a delivery given up after its last attempt.
func (d *WebhookDeliveries) Discarded() { d.attempts.WithLabelValues(WebhookDiscarded).Inc() }

// WatchWebhooks adds the webhook metrics, once webhooks run: attempts by
// outcome, counted through the WebhookDeliveries it returns, and the
// backlog, read from backlog at each scrape. Without webhooks none of these
// series exist.
func (m *Metrics) WatchWebhooks(backlog WebhookBacklogFunc) *WebhookDeliveries {
	d := &WebhookDeliveries{attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "webhook_deliveries_total",
		Help: "Webhook delivery attempts, by outcome: delivered (2xx), failed (retried later), discarded (the last attempt failed).",
	}, []string{"outcome"})}
	for _, o := range []string{WebhookDelivered, WebhookFailed, WebhookDiscarded} {
		d.attempts.WithLabelValues(o)
	}
	m.registry.MustRegister(d.attempts, &backlogCollector{read: backlog, now: time.Now})
	return d
}

var (
	unrelayedDesc = prometheus.NewDesc(namespace+"_webhook_events_unrelayed",
		"Events recorded but not yet enqueued for webhook delivery.", nil, nil)
	webhookJobsDesc = prometheus.NewDesc(namespace+"_webhook_jobs",
		"Webhook deliveries not finished, by state: available (due now), running, retryable and scheduled (waiting for a retry), pending.", []string{"state"}, nil)
	oldestDesc = prometheus.NewDesc(namespace+"_webhook_oldest_undelivered_seconds",
		"Age of the oldest event not yet delivered to every URL; 0 when none waits.", nil, nil)
)

// backlogStates are shown at each scrape, zero or not.
var backlogStates = []string{"available", "running", "retryable", "scheduled", "pending"}

// backlogCollector reads the backlog when scraped, within backlogTimeout.
type backlogCollector struct {
	read WebhookBacklogFunc
	now  func() time.Time
}

// backlogTimeout bounds the backlog's read, so a slow database cannot hold
// a scrape: the series are then left out of that scrape.
const backlogTimeout = 2 * time.Second

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- unrelayedDesc
	ch <- webhookJobsDesc
	ch <- oldestDesc
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), backlogTimeout)
	defer cancel()
	b, err := c.read(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(unrelayedDesc, prometheus.GaugeValue, float64(b.Unrelayed))
	for _, s := range backlogStates {
		ch <- prometheus.MustNewConstMetric(webhookJobsDesc, prometheus.GaugeValue, float64(b.Jobs[s]), s)
	}
	age := 0.0
	if !b.Oldest.IsZero() {
		age = max(c.now().Sub(b.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}
