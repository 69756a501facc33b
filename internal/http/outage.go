package http

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// outage turns the 503s of a database outage into two log lines: a warning
// when the first request fails, and a note when a request that needs the
// database succeeds again. The failures between are logged at debug level:
// during a failover every request fails, and a warning for each would bury
// the one line that matters.
type outage struct {
	mu     sync.Mutex
	since  time.Time // the first failure; zero: no outage
	failed int       // requests answered 503 since then
}

// unavailable records a request answered 503 for err: the first of an
// outage is a warning, the others debug lines.
func unavailable(ctx context.Context, err error, code string) {
	log := requestLog(ctx)
	var o *outage
	if st := stateOf(ctx); st != nil {
		o = st.outage
	}
	if o == nil {
		log.Warn().Err(err).Msg(code)
		return
	}
	o.mu.Lock()
	first := o.since.IsZero()
	if first {
		o.since = time.Now()
	}
	o.failed++
	o.mu.Unlock()
	if first {
		log.Warn().Err(err).Msg(code + ": the database is unavailable; answering 503 until it recovers (each failure is logged at debug)")
		return
	}
	log.Debug().Err(err).Msg(code)
}

// recovered ends an outage, if one is under way, with a line that says how
// long it lasted, in the log of the request (ctx) that found it over.
func (o *outage) recovered(ctx context.Context) {
	o.mu.Lock()
	since, failed := o.since, o.failed
	o.since, o.failed = time.Time{}, 0
	o.mu.Unlock()
	if !since.IsZero() {
		requestLog(ctx).Info().Dur("unavailable_for", time.Since(since)).Int("failed_requests", failed).Msg("the database is available again")
	}
}

// needsDatabase marks routes that reach the database: one of them
// answering 2xx ends an outage.
func (o *outage) needsDatabase(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// observe records the status already; a recorder of its own only
		// where observe is not in front.
		var rec *statusRecorder
		if st := stateOf(r.Context()); st != nil {
			rec = &st.rec
		} else {
			rec = &statusRecorder{ResponseWriter: w}
			w = rec
		}
		next.ServeHTTP(w, r)
		if rec.status >= 200 && rec.status < 300 {
			o.recovered(r.Context())
		}
	})
}
