// Package migrations holds the SQL schema of each store as goose migrations:
// postgres/ for PostgreSQL and sqlite/ for SQLite, numbered alike so both
// stores move through the same versions.
package migrations

import "embed"

// FS holds the migrations, one directory per dialect: "postgres" and "sqlite".
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
