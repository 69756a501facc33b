// Package store picks the token store DATABASE_URL names, PostgreSQL or
// SQLite, and opens it. It also holds what serves any store from above: the
// Gate that stands in for a store until it opens, and the figures metrics
// read from it (Stats).
package store

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/sqlite"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Kind is a storage backend.
type Kind string

// The backends.
const (
	Postgres Kind = "postgres"
	SQLite   Kind = "sqlite"
)

// DefaultFileName is the SQLite file in the data directory used when
// DATABASE_URL is empty.
const DefaultFileName = "signin-tokens.db"

// acceptedForms is told to whoever sets DATABASE_URL to something else.
const acceptedForms = "postgres://... or postgresql://... for PostgreSQL; " +
	"sqlite:PATH, sqlite:///ABSOLUTE/PATH or a plain file path for SQLite; " +
	"or empty for SQLite at " + DefaultFileName + " in the data directory"

// Migrator brings a store's schema up to date.
type Migrator interface {
	Migrate(ctx context.Context) error
}

// Store is a tokens.Store that can migrate its own schema.
type Store interface {
	tokens.Store
	Migrator
}

// Location is where DATABASE_URL points. Its String form is safe to log: it
// never shows a password or URL parameters.
type Location struct {
	Kind Kind
	Path string // the database file, for SQLite
	url  string // the connection URL as given, for PostgreSQL
}

// String describes l for logs, e.g. "postgres db.internal:5432/tokens" or
// "sqlite /var/lib/signin-tokens/signin-tokens.db".
func (l Location) String() string {
	if l.Kind == SQLite {
		return "sqlite " + l.Path
	}
	u, err := url.Parse(l.url)
	if err != nil {
		return "postgres (unparsable URL)"
	}
	return "postgres " + u.Host + u.Path
}

// Parse reads DATABASE_URL: a postgres:// or postgresql:// URL selects
// PostgreSQL; a sqlite: URL (sqlite:///abs/path.db, sqlite://rel/path.db,
// sqlite:rel/path.db) or a plain file path selects SQLite; empty selects
// SQLite at DefaultFileName in dataDir (the working directory if dataDir is
// empty). Anything else is an error naming DATABASE_URL and the accepted forms.
func Parse(databaseURL, dataDir string) (Location, error) {
	v := strings.TrimSpace(databaseURL)
	if v == "" {
		return Location{Kind: SQLite, Path: filepath.Join(dataDir, DefaultFileName)}, nil
	}
	scheme, rest, hasScheme := cutScheme(v)
	if !hasScheme {
		return Location{Kind: SQLite, Path: v}, nil
	}
	switch scheme {
	case "postgres", "postgresql":
		if !strings.HasPrefix(rest, "//") {
			return Location{}, fmt.Errorf("DATABASE_URL: a PostgreSQL URL starts with %s://; accepted: %s", scheme, acceptedForms)
		}
		return Location{Kind: Postgres, url: v}, nil
	case "sqlite":
		path := strings.TrimPrefix(rest, "//") // sqlite:///abs → /abs; sqlite://rel → rel
		switch {
		case path == "":
			return Location{}, fmt.Errorf("DATABASE_URL: the sqlite: URL names no file; accepted: %s", acceptedForms)
		case strings.ContainsAny(path, "?#"):
			return Location{}, fmt.Errorf("DATABASE_URL: sqlite: URLs take no parameters (the connection settings are fixed); accepted: %s", acceptedForms)
		}
		return Location{Kind: SQLite, Path: path}, nil
	}
	// Only the scheme is shown: the rest may hold a password.
	return Location{}, fmt.Errorf("DATABASE_URL: unsupported scheme %q; accepted: %s", scheme, acceptedForms)
}

// cutScheme splits "scheme:rest" when v starts with a URL scheme (RFC 3986:
// a letter, then letters, digits, '+', '-' or '.'), lower-cased. A single
// letter is taken for a Windows drive ("C:\..."), not a scheme.
func cutScheme(v string) (scheme, rest string, ok bool) {
	i := strings.IndexByte(v, ':')
	if i < 2 {
		return "", "", false
	}
	for j := 0; j < i; j++ {
		c := v[j]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !(letter || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", "", false
		}
	}
	return strings.ToLower(v[:i]), v[i+1:], true
}

// Options are the settings of a store beyond DATABASE_URL.
type Options struct {
	DataDir string // where the default SQLite database lives
	// Writers is PostgreSQL's number of writers grouping concurrent creates
	// and redemptions into one transaction each; 0 writes each on its own.
	Writers int
	// TracerProvider, when set, traces PostgreSQL's group commits; nil: off.
	TracerProvider trace.TracerProvider
	// RequireSync is PostgreSQL's REQUIRE_SYNC_REPLICATION: writes and
	// readiness are refused while the primary does not replicate
	// synchronously (see postgres.Options).
	RequireSync bool
}

// Open opens the store DATABASE_URL names (see Parse) and returns it with
// its Location, whose String form is safe to log. It neither migrates nor
// retries: a database that cannot be reached yields an error that is
// tokens.ErrUnavailable, and the caller decides whether to try again.
func Open(ctx context.Context, databaseURL string, o Options) (Store, Location, error) {
	loc, err := Parse(databaseURL, o.DataDir)
	if err != nil {
		return nil, Location{}, err
	}
	switch loc.Kind {
	case Postgres:
		s, err := postgres.Open(ctx, loc.url, postgres.Options{Writers: o.Writers, RequireSync: o.RequireSync, TracerProvider: o.TracerProvider})
		if err != nil {
			return nil, loc, err
		}
		return s, loc, nil
	default:
		s, err := sqlite.Open(ctx, loc.Path)
		if err != nil {
			return nil, loc, err
		}
		return s, loc, nil
	}
}
