package main

import (
	"github.com/signin-tokens/signin-tokens/internal/metrics"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
)

// poolStats reads the open store's connection pool figures for /metrics; it
// answers false while the database is still being connected.
func (g *gate) poolStats() (metrics.PoolStats, bool) {
	p := g.st.Load()
	if p == nil {
		return metrics.PoolStats{}, false
	}
	switch st := (*p).(type) {
	case *postgres.Store:
		return metrics.PostgresStats(st), true
	case *sqlite.Store:
		return metrics.SQLDBStats(st.Stats()), true
	}
	return metrics.PoolStats{}, false
}
