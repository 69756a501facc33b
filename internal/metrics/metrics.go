// Package metrics keeps the service's Prometheus metrics: HTTP requests by
// route, method and status with their latency; tokens created, revoked and
// redeemed, with the outcome of every refused redemption; and the database
// connection pool's figures. Handler serves them for /metrics.
package metrics

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/signin-tokens/signin-tokens/internal/store"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// namespace prefixes every metric this package defines.
const namespace = "signin_tokens"

// Outcomes of a refused redemption, the values of the outcome label.
const (
	OutcomeAlreadyUsed = "already_used"        // the ticket was redeemed before
	OutcomeRevoked     = "revoked"             // its token was revoked
	OutcomeExpired     = "expired"             // past its expiry
	OutcomeInvalid     = "invalid"             // not a ticket we signed, or not the one stored
	OutcomeNotFound    = "not_found"           // signed by us, but no such token is stored
	OutcomeMissing     = "missing"             // no ticket in the request
	OutcomeUnavailable = "unavailable"         // the database could not be reached
	OutcomeCodeWrong   = "code_incorrect"      // a one-time code that is not the user's
	OutcomeCodesGone   = "verification_failed" // no code of the user may be tried any more
	OutcomeError       = "error"               // anything else
	OutcomeOK          = "ok"                  // verifications and sign-in page steps only: a redeem would succeed
)

// outcomeByCode names the outcome of each error code a redemption can fail with.
var outcomeByCode = map[string]string{
	tokens.CodeAlreadyUsed:        OutcomeAlreadyUsed,
	tokens.CodeRevoked:            OutcomeRevoked,
	tokens.CodeTicketExpired:      OutcomeExpired,
	tokens.CodeTicketInvalid:      OutcomeInvalid,
	tokens.CodeCannotBeUsed:       OutcomeNotFound,
	tokens.CodeParamMissing:       OutcomeMissing,
	tokens.CodeUnavailable:        OutcomeUnavailable,
	tokens.CodeCodeIncorrect:      OutcomeCodeWrong,
	tokens.CodeActorAlreadyUsed:   OutcomeAlreadyUsed,
	tokens.CodeActorRevoked:       OutcomeRevoked,
	tokens.CodeActorCannotBeUsed:  OutcomeNotFound,
	tokens.CodeVerificationFailed: OutcomeCodesGone,
}

// RedeemOutcome returns the outcome label for a redemption refused with err;
// for a verification or page step, nil is OutcomeOK.
func RedeemOutcome(err error) string {
	if err == nil {
		return OutcomeOK
	}
	if o, ok := outcomeByCode[tokens.ErrorCode(err)]; ok {
		return o
	}
	return OutcomeError
}

// Metrics holds every metric and the registry that serves them. It is a
// tokens.Observer, and its ObserveRequest is an HTTP request observer.
type Metrics struct {
	registry       *prometheus.Registry
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	created        prometheus.Counter
	revoked        prometheus.Counter
	redeemed       prometheus.Counter
	redeemFailures *prometheus.CounterVec
	codeFailures   prometheus.Counter
	verifications  *prometheus.CounterVec
	pageSteps      *prometheus.CounterVec
}

var _ tokens.Observer = (*Metrics)(nil)

// New returns a Metrics with its own registry, which also carries the Go
// runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "tokens_created_total",
			Help: "Sign-in tokens created (idempotent replays not counted).",
		}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "tokens_revoked_total",
			Help: "Sign-in tokens revoked.",
		}),
		redeemed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "tokens_redeemed_total",
			Help: "Tickets redeemed: sign-in tokens accepted.",
		}),
		redeemFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "token_redemption_failures_total",
			Help: "Redemptions refused, by outcome: already_used, revoked, expired, invalid, not_found, missing, code_incorrect, verification_failed, unavailable, error.",
		}, []string{"outcome"}),
		codeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "code_failures_total",
			Help: "Wrong one-time codes counted against a user's coded tokens (code_failed).",
		}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ticket_verifications_total",
			Help: "Tickets verified without being consumed (POST /v1/tickets/verify and the sign-in page), by outcome: ok, or why a redeem would be refused.",
		}, []string{"outcome"}),
		pageSteps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sign_in_page_total",
			Help: "Hosted sign-in page requests, by step (view: GET or HEAD; continue: the POST) and outcome: ok, or why the ticket was refused.",
		}, []string{"step", "outcome"}),
	}
	// Every outcome is shown from the start, so rate() and alerts see a zero
	// rather than a missing series. They are taken from outcomeByCode, so an
	// outcome added there cannot be left out here.
	for _, o := range outcomeByCode {
		m.redeemFailures.WithLabelValues(o)
	}
	m.redeemFailures.WithLabelValues(OutcomeError)
	for _, o := range append(slices.Collect(maps.Values(outcomeByCode)), OutcomeError, OutcomeOK) {
		m.verifications.WithLabelValues(o)
		for _, step := range []string{PageView, PageContinue} {
			m.pageSteps.WithLabelValues(step, o)
		}
	}
	m.registry.MustRegister(m.requests, m.latency, m.created, m.revoked, m.redeemed, m.redeemFailures, m.codeFailures,
		m.verifications, m.pageSteps,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// ObserveRequest counts one answered request and its latency. Its signature
// is the HTTP server's RequestObserver.
func (m *Metrics) ObserveRequest(route, method string, status int, elapsed time.Duration) {
	method = methodLabel(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(elapsed.Seconds())
}

// methodLabel keeps the method label to the standard methods, so a client
// sending made-up methods cannot create new series without end.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "OTHER"
}

// Created counts a new token.
func (m *Metrics) Created(tokens.Token) { m.created.Inc() }

// Revoked counts a revoked token.
func (m *Metrics) Revoked(tokens.Token) { m.revoked.Inc() }

// Redeemed counts an accepted ticket.
func (m *Metrics) Redeemed(tokens.Token) { m.redeemed.Inc() }

// CodeFailed counts a wrong one-time code that was counted against the
// user's codes.
func (m *Metrics) CodeFailed() { m.codeFailures.Inc() }

// RedeemFailed counts a refused redemption under its outcome.
func (m *Metrics) RedeemFailed(err error) { m.redeemFailures.WithLabelValues(RedeemOutcome(err)).Inc() }

// Verified counts a verification under its outcome.
func (m *Metrics) Verified(err error) { m.verifications.WithLabelValues(RedeemOutcome(err)).Inc() }

// The steps of the hosted sign-in page, the values of the step label.
const (
	PageView     = "view"     // GET or HEAD of the page
	PageContinue = "continue" // the POST of its Continue button
)

// SignInPage counts one step of the hosted sign-in page under its outcome;
// its signature is the HTTP server's PageObserver.
func (m *Metrics) SignInPage(step string, err error) {
	if step != PageView && step != PageContinue {
		step = "other"
	}
	m.pageSteps.WithLabelValues(step, RedeemOutcome(err)).Inc()
}

// WatchPool exports the figures stats reports at each scrape. While it has
// none (the database is still being connected), the pool's series are left
// out.
func (m *Metrics) WatchPool(stats store.Stats) {
	m.registry.MustRegister(&poolCollector{stats: stats})
}

var (
	poolMaxDesc = prometheus.NewDesc(namespace+"_db_connections_max",
		"The most database connections the pool opens; 0: no limit.", nil, nil)
	poolConnsDesc = prometheus.NewDesc(namespace+"_db_connections",
		"Open database connections, by state: in_use or idle.", []string{"state"}, nil)
	poolWaitsDesc = prometheus.NewDesc(namespace+"_db_connection_waits_total",
		"Requests for a database connection that had to wait for one.", nil, nil)
	poolWaitSecondsDesc = prometheus.NewDesc(namespace+"_db_connection_wait_seconds_total",
		"Time spent waiting for a database connection.", nil, nil)
	writeGroupsDesc = prometheus.NewDesc(namespace+"_db_write_groups_total",
		"Transactions that carried two creates or redemptions or more (group commit).", nil, nil)
	groupedWritesDesc = prometheus.NewDesc(namespace+"_db_grouped_writes_total",
		"Creates and redemptions sent in a group; the rest went alone.", nil, nil)
	retriedWritesDesc = prometheus.NewDesc(namespace+"_db_group_retried_writes_total",
		"Writes the writers handed back to run alone: of a group the database refused or that ran out of time, or whose row another transaction held.", nil, nil)
	syncDesc = prometheus.NewDesc(namespace+"_db_synchronous_replication",
		"1 when the PostgreSQL primary, as last probed, makes commits wait for a synchronous standby (synchronous_standby_names set, synchronous_commit on or remote_apply), else 0; absent until probed.", nil, nil)
	syncRequiredDesc = prometheus.NewDesc(namespace+"_db_synchronous_replication_required",
		"1 when REQUIRE_SYNC_REPLICATION is set: writes and readiness are refused while the primary does not replicate synchronously.", nil, nil)
	unreplicatedDesc = prometheus.NewDesc(namespace+"_db_unreplicated_commits_total",
		"Writes answered 503 (outcome unknown) because they committed without being known durable: their wait for the synchronous standby was canceled, or they returned past their deadline.", nil, nil)
)

// poolCollector reads the pool's figures when scraped, so they are never stale.
type poolCollector struct {
	stats store.Stats
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolMaxDesc
	ch <- poolConnsDesc
	ch <- poolWaitsDesc
	ch <- poolWaitSecondsDesc
	ch <- writeGroupsDesc
	ch <- groupedWritesDesc
	ch <- retriedWritesDesc
	ch <- syncDesc
	ch <- syncRequiredDesc
	ch <- unreplicatedDesc
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.stats.PoolStats()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(s.MaxConns))
	ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(s.InUseConns), "in_use")
	ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(s.IdleConns), "idle")
	ch <- prometheus.MustNewConstMetric(poolWaitsDesc, prometheus.CounterValue, float64(s.WaitCount))
	ch <- prometheus.MustNewConstMetric(poolWaitSecondsDesc, prometheus.CounterValue, s.WaitDuration.Seconds())
	ch <- prometheus.MustNewConstMetric(writeGroupsDesc, prometheus.CounterValue, float64(s.WriteGroups))
	ch <- prometheus.MustNewConstMetric(groupedWritesDesc, prometheus.CounterValue, float64(s.GroupedWrites))
	ch <- prometheus.MustNewConstMetric(retriedWritesDesc, prometheus.CounterValue, float64(s.RetriedWrites))
	if s.SyncKnown {
		ch <- prometheus.MustNewConstMetric(syncDesc, prometheus.GaugeValue, boolValue(s.Synchronous))
	}
	ch <- prometheus.MustNewConstMetric(syncRequiredDesc, prometheus.GaugeValue, boolValue(s.SyncRequired))
	ch <- prometheus.MustNewConstMetric(unreplicatedDesc, prometheus.CounterValue, float64(s.UnreplicatedCommits))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
