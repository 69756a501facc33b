package store

import (
	"time"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// PoolStats are a store's connection pool and group commit figures at one
// moment.
type PoolStats struct {
	MaxConns     int           // the most connections the pool opens; 0: no limit
	InUseConns   int           // connections lent out
	IdleConns    int           // connections open and waiting to be lent
	WaitCount    int64         // requests for a connection that had to wait, since start
	WaitDuration time.Duration // the time they waited, in all

	// Group commit (PostgreSQL's DATABASE_WRITERS), since start.
	WriteGroups   int64 // transactions that carried two writes or more
	GroupedWrites int64 // the writes they carried
	RetriedWrites int64 // writes handed back to run alone (a refused group, a locked row)

	// Replication (PostgreSQL), as the write probe last saw the primary.
	SyncRequired        bool  // REQUIRE_SYNC_REPLICATION
	SyncKnown           bool  // a probe has read the primary's settings
	Synchronous         bool  // commits wait for a synchronous standby
	UnreplicatedCommits int64 // writes answered 503 because their durability was unknown, since start
}

// Stats reports a store's figures, for metrics: the metrics package watches
// this interface and never imports a concrete store. ok is false while there
// are no figures to give, e.g. while the database is still being connected.
type Stats interface {
	PoolStats() (s PoolStats, ok bool)
}

// PoolStatsOf reads the figures of st, a PostgreSQL or SQLite store; it
// answers false for any other store.
//
// The translation lives here, not in the stores, because this package
// imports them to open them (open.go): a store returning PoolStats would
// import this package back, a cycle. So each store reports in its own terms
// (pgx's pool figures, database/sql's) and the one package that already
// knows every backend turns them into PoolStats.
func PoolStatsOf(st tokens.Store) (PoolStats, bool) {
	switch st := st.(type) {
	case *postgres.Store:
		p, w, r := st.Stat(), st.WriteStats(), st.ReplicationStats()
		return PoolStats{
			SyncRequired:        r.Required,
			SyncKnown:           r.Known,
			Synchronous:         r.Synchronous,
			UnreplicatedCommits: r.Unreplicated,

			MaxConns:      int(p.MaxConns()),
			InUseConns:    int(p.AcquiredConns()),
			IdleConns:     int(p.IdleConns()),
			WaitCount:     p.EmptyAcquireCount(),
			WaitDuration:  p.EmptyAcquireWaitTime(),
			WriteGroups:   w.Groups,
			GroupedWrites: w.Grouped,
			RetriedWrites: w.Retried,
		}, true
	case *sqlite.Store:
		s := st.Stats()
		return PoolStats{
			MaxConns:     s.MaxOpenConnections,
			InUseConns:   s.InUse,
			IdleConns:    s.Idle,
			WaitCount:    s.WaitCount,
			WaitDuration: s.WaitDuration,
		}, true
	}
	return PoolStats{}, false
}
