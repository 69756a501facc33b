// Package tokens is the domain of the service: sign-in tokens, their statuses,
// the verbs that change them, the errors callers see, and the signed tickets
// that carry them. It imports nothing of HTTP or SQL.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"slices"
	"strings"
	"time"
)

// Status is where a sign-in token is in its life.
type Status string

// The statuses a token can have. There is no "expired" status: expiry is a
// property of a pending token (ExpiresAt), not a state change.
const (
	StatusPending  Status = "pending"
	StatusAccepted Status = "accepted"
	StatusRevoked  Status = "revoked"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusAccepted, StatusRevoked:
		return true
	}
	return false
}

// Kind is which of the two kinds of token a token is: a sign-in token, or an
// actor token, which signs someone in as the user while naming who acts
// (impersonation). They are one concept: one table, one set of verbs, one
// store interface; the kind only changes defaults, the ticket's "st" and
// "act" claims, and the codes of some errors. A token's kind is the prefix of
// its id, so it is never stored apart from it.
type Kind string

// The kinds of token.
const (
	KindSignIn Kind = "sign_in_token"
	KindActor  Kind = "actor_token"
)

// IDPrefix is the prefix of the kind's ids, also its object name's
// initials; a sign-in token's for an unknown kind.
func (k Kind) IDPrefix() string {
	if k == KindActor {
		return "act_"
	}
	return "sit_"
}

// KindOf returns the kind of the token id, or "" for an id of neither kind.
func KindOf(id string) Kind {
	for _, k := range []Kind{KindSignIn, KindActor} {
		if strings.HasPrefix(id, k.IDPrefix()) {
			return k
		}
	}
	return ""
}

// Token is a sign-in or actor token as stored. The ticket itself is never stored; only
// TicketHash, its SHA-256, is.
type Token struct {
	ID         string
	UserID     string
	OrgID      string // empty when none was given
	Status     Status
	TicketHash []byte
	CreatedAt  time.Time
	UpdatedAt  time.Time
	ExpiresAt  time.Time
	AcceptedAt *time.Time
	RevokedAt  *time.Time
	// RedirectURL is where the person goes on to redeem the ticket; empty
	// when none was given (then the configured sign-in page is used).
	RedirectURL string
	// Metadata is a JSON object the creator attached, compact; nil when none.
	Metadata []byte
	// Actor, for an actor token, is the JSON object naming who acts, with a
	// string "sub"; nil for a sign-in token.
	Actor []byte
	// SessionMaxDuration, for an actor token, is how long the session it
	// starts may last; 0 for a sign-in token.
	SessionMaxDuration time.Duration
}

// Kind returns the token's kind.
func (t Token) Kind() Kind { return KindOf(t.ID) }

// Expired reports whether t is past its expiry at now.
func (t Token) Expired(now time.Time) bool { return !now.Before(t.ExpiresAt) }

// SortNewestFirst sorts list as List orders it: newest first, the higher id
// first among tokens created at the same moment.
func SortNewestFirst(list []Token) {
	slices.SortFunc(list, func(a, b Token) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
}

// ListFilter selects and pages tokens for Store.List. Zero fields do not filter.
type ListFilter struct {
	Kind   Kind // "" lists sign-in tokens
	UserID string
	Status Status
	Limit  int
	Offset int
}

// Change says what a conditional change of a token's state did.
type Change uint8

// The outcomes of Redeem and Revoke.
const (
	// Unchanged: the token did not meet the change's conditions; it is
	// returned as stored.
	Unchanged Change = iota
	// Changed: this call made the change.
	Changed
	// Replayed: an earlier call with the same idempotency key and the same
	// request made it; the token is returned as stored, which is as that
	// call left it, since accepted and revoked are final.
	Replayed
)

// Idempotency is an Idempotency-Key sent with a change: the key, what
// identifies the request it came with, and the moment before which an
// earlier use of the key no longer counts (IdempotencyWindow ago).
type Idempotency struct {
	Key         string
	RequestHash []byte
	NotBefore   time.Time
}

// StoredKey is an idempotency key as a store recorded it.
type StoredKey struct {
	RequestHash []byte
	TokenID     string
	CreatedAt   time.Time
}

// Replays reports whether stored, the record of k's key, answers the request
// k came with: true when the key was used for the same request since
// NotBefore, ErrIdempotencyMismatch when it was used for another, and false
// when it is free (stored is nil, or older than NotBefore).
func (k Idempotency) Replays(stored *StoredKey) (bool, error) {
	if stored == nil || stored.CreatedAt.Before(k.NotBefore) {
		return false, nil
	}
	if subtle.ConstantTimeCompare(stored.RequestHash, k.RequestHash) != 1 {
		return false, ErrIdempotencyMismatch
	}
	return true, nil
}

// Creation is a new token as the store is asked to create it.
type Creation struct {
	Token Token
	// Code, optional, is the stored form of the token's one-time code.
	Code *StoredCode
	// RevokePrevious revokes the user's other pending tokens of the same
	// kind in the same transaction as the insert.
	RevokePrevious bool
	// Key, optional: a create retried under the same key and request
	// returns the token the first one created.
	Key *Idempotency
}

// CreateResult is what a Create did.
type CreateResult struct {
	// Token is the token created, or for a retry under a key, the one the
	// first request created.
	Token Token
	// Created is false for a retry under a key: nothing was written.
	Created bool
	// Revoked are the tokens RevokePrevious revoked.
	Revoked []Token
	// Code is, for a retry, what is stored of the token's code, if it has one.
	Code *StoredCode
}

// CodeRedemption is a redemption by one-time code: the user's pending,
// unexpired coded token whose code matches is accepted, once.
type CodeRedemption struct {
	UserID string
	Now    time.Time
	// MaxAttempts is how many wrong codes a token takes; past them it can no
	// longer be redeemed by code.
	MaxAttempts int
	// Matches tells, in constant time, whether the code sent is the code of
	// the token tokenID that stored records.
	Matches func(tokenID string, stored StoredCode) bool
	Key     *Idempotency // optional, as for Redeem
}

// CodeOutcome says what a redemption by code did.
type CodeOutcome uint8

// The outcomes of RedeemCode.
const (
	// CodeAccepted: the matching token was accepted by this call.
	CodeAccepted CodeOutcome = iota + 1
	// CodeReplayed: a retry under the key of the call that accepted it.
	CodeReplayed
	// CodeFinished: the code is that of a token that is no longer pending,
	// or has expired; the token is returned as stored.
	CodeFinished
	// CodeWrong: no code matched; the attempt was counted against every
	// pending, unexpired coded token of the user with attempts left.
	CodeWrong
	// CodeNoneLeft: the user has no pending, unexpired coded token with
	// attempts left.
	CodeNoneLeft
)

// Store keeps tokens. Every method that changes a token takes the one "now"
// used for all of its timestamps. Methods return ErrNotFound (or an *Error
// wrapping it) for an unknown id; ErrUnavailable when the database cannot be
// reached or did not answer in time; an error wrapping context.Canceled when
// the caller left; any other error is an internal failure.
type Store interface {
	// Create inserts a new token, with its code, revoking the user's other
	// pending tokens if asked, all in one transaction. With a key already
	// used since its NotBefore, it writes nothing and returns the token
	// created under that key, or ErrIdempotencyMismatch when the request
	// hashes differ.
	Create(ctx context.Context, c Creation) (CreateResult, error)
	// Get returns the token with the given id.
	Get(ctx context.Context, id string) (Token, error)
	// List returns the tokens matching f, newest first, and how many match in all.
	List(ctx context.Context, f ListFilter) ([]Token, int, error)
	// Revoke moves a pending token to revoked in one conditional statement.
	// It returns the revoked token and Changed, or the token as stored and
	// Unchanged when it was not pending. With a key, the key is recorded in
	// the same transaction as the change, and only with it; a key already
	// recorded for the same request answers Replayed with the token as
	// stored, one recorded for another request ErrIdempotencyMismatch.
	Revoke(ctx context.Context, id string, now time.Time, key *Idempotency) (Token, Change, error)
	// RevokeUser revokes every pending token of one kind of a user,
	// expired ones included, in one statement, and returns them.
	RevokeUser(ctx context.Context, kind Kind, userID string, now time.Time) ([]Token, error)
	// Redeem moves a pending, unexpired token whose ticket hash matches to
	// accepted in one conditional statement. It returns the accepted token
	// and Changed, or the token as stored and Unchanged when any condition
	// failed. A key is treated as Revoke treats it.
	Redeem(ctx context.Context, id string, ticketHash []byte, now time.Time, key *Idempotency) (Token, Change, error)
	// RedeemCode redeems by one-time code. Concurrent calls for one user
	// are serialized, so that no token's codes are compared more than
	// MaxAttempts times in all, and a wrong code's count is kept although
	// the call fails. A key is checked before any code is compared.
	RedeemCode(ctx context.Context, r CodeRedemption) (Token, CodeOutcome, error)
	// DeleteFinished deletes up to limit tokens that expired before cutoff,
	// whatever their status (a token is finished once it expired, used or
	// not), and returns how many it deleted; safe to run from several
	// processes at once.
	DeleteFinished(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// DeleteIdempotencyKeys deletes up to limit idempotency keys used before
	// cutoff, and returns how many it deleted; safe to run from several
	// processes at once.
	DeleteIdempotencyKeys(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// AppendEvent records e, a change that changed no token (a refused
	// redemption), for the stored token e.Token.ID as it stands, in a
	// statement of its own. Every change of a token records its own
	// events, with the EventContext of its ctx, in the change's own
	// transaction.
	AppendEvent(ctx context.Context, e Event) error
	// ListEvents returns the events matching f, oldest first, and whether
	// more follow. A page never shows an event while an event that would
	// sort before it may still commit, so a reader that pages with After
	// sees every event exactly once.
	ListEvents(ctx context.Context, f EventFilter) ([]Event, bool, error)
	// DeleteEvents deletes up to limit events created before cutoff, and
	// returns how many it deleted; safe to run from several processes at
	// once.
	DeleteEvents(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// Ping reports whether the database is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

const (
	idPrefixLength = 4 // "sit_", "act_"
	idLength       = 27
	base62         = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	maxIDBytes     = 64
)

// idTimeLength is how many of an id's characters give its creation time.
const idTimeLength = 6 // 62^6 seconds: until the year 3770

// NewID returns a new id of kind k for a token created at created: "sit_" or
// "act_", its Unix
// time in seconds as 6 base62 characters, and 21 random base62 characters
// (about 125 bits). Later tokens get ids that sort after earlier ones, byte
// by byte, so the primary key grows at its right edge instead of at random
// pages, and the recent tokens that redemptions look up share a few pages
// that stay in cache. The time it shows is already in the token's created_at.
func (k Kind) NewID(created time.Time) string {
	var b [idPrefixLength + idLength]byte
	copy(b[:], k.IDPrefix())
	secs := uint64(max(created.Unix(), 0))
	for i := idPrefixLength + idTimeLength - 1; i >= idPrefixLength; i-- {
		b[i] = base62[secs%62]
		secs /= 62
	}
	// Drawn straight into the id: Create makes one for every token.
	fillBase62(b[idPrefixLength+idTimeLength:])
	return string(b[:])
}

// RandomBase62 returns n characters drawn uniformly from [0-9A-Za-z] with a
// cryptographic generator.
func RandomBase62(n int) string {
	b := make([]byte, n)
	fillBase62(b)
	return string(b)
}

// fillBase62 fills dst with characters drawn uniformly from [0-9A-Za-z] with
// a cryptographic generator, rejecting bytes that would bias the draw.
func fillBase62(dst []byte) {
	var buf [48]byte
	for n := 0; n < len(dst); {
		rand.Read(buf[:]) // never fails on supported platforms
		for _, b := range buf {
			if b >= 248 { // 248 = 4*62: larger bytes would favour some characters
				continue
			}
			dst[n] = base62[b%62]
			if n++; n == len(dst) {
				return
			}
		}
	}
}

// ValidID reports whether id has the shape of a token id. Ids that cannot be
// ours are turned away before any query.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > maxIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
