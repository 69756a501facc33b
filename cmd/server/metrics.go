package main

import "github.com/signin-tokens/signin-tokens/internal/store"

var _ store.Stats = (*gate)(nil)

// PoolStats reads the open store's connection pool figures for /metrics; it
// answers false while the database is still being connected.
func (g *gate) PoolStats() (store.PoolStats, bool) {
	p := g.st.Load()
	if p == nil {
		return store.PoolStats{}, false
	}
	return store.PoolStatsOf(*p)
}
