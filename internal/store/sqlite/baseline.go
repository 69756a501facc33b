package sqlite

import (
	"net/url"
	"strings"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// The load tool's SQLite baseline issues the store's own statements straight
// through the driver, on connections opened with the store's own settings;
// these give it both, so the two cannot drift apart.

// DSN is the data source name Open uses for the file at path. Each pragma in
// replace, such as "synchronous(FULL)", takes the place of the store's pragma
// of the same name, so a benchmark can try other settings.
func DSN(path string, replace ...string) string {
	params := url.Values{}
	for k, v := range connParams {
		params[k] = append([]string(nil), v...)
	}
	for _, r := range replace {
		name, _, _ := strings.Cut(r, "(")
		pragmas := params["_pragma"][:0:0]
		for _, p := range params["_pragma"] {
			if n, _, _ := strings.Cut(p, "("); n != name {
				pragmas = append(pragmas, p)
			}
		}
		params["_pragma"] = append(pragmas, r)
	}
	// A file: URI, its path escaped, so that '?', '#' and '%' in file names
	// stay part of the name.
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + params.Encode()
}

// InsertStatement is the statement Create inserts t with, and its arguments.
func InsertStatement(t tokens.Token) (string, []any) {
	return insertTokenSQL, insertTokenArgs(t)
}

// RedeemStatement is the conditional UPDATE Redeem accepts a token with, and
// its arguments.
func RedeemStatement(id string, ticketHash []byte, now time.Time) (string, []any) {
	return redeemSQL, []any{id, ticketHash, now.UnixMilli()}
}
