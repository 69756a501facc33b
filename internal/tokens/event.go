package tokens

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Verbs of the audit trail: an event's type is a token kind and one of them,
// as in "sign_in_token.accepted".
const (
	VerbCreated       = "created"
	VerbAccepted      = "accepted"
	VerbRevoked       = "revoked"
	VerbRedeemRefused = "redeem_refused"
	VerbCodeFailed    = "code_failed"
)

var eventVerbs = []string{VerbCreated, VerbAccepted, VerbRevoked, VerbRedeemRefused, VerbCodeFailed}

// EventType is the type of an event about a token of kind k.
func EventType(k Kind, verb string) string { return string(k) + "." + verb }

// ValidEventType reports whether typ is one of the event types.
func ValidEventType(typ string) bool {
	kind, verb, ok := strings.Cut(typ, ".")
	if !ok || (Kind(kind) != KindSignIn && Kind(kind) != KindActor) {
		return false
	}
	for _, v := range eventVerbs {
		if v == verb {
			return true
		}
	}
	return false
}

// EventContext is who made a change and from where, as the audit trail
// records it: never a secret key, only its label or fingerprint.
type EventContext struct {
	Key       string // which secret key: a fingerprint or a label
	IP        string // the client's address, as the rate limiter sees it
	UserAgent string
	TraceID   string
}

type eventContextKey struct{}

// WithEventContext returns ctx carrying ec, for the store to record with
// the changes made under ctx.
func WithEventContext(ctx context.Context, ec EventContext) context.Context {
	return context.WithValue(ctx, eventContextKey{}, ec)
}

// EventContextFrom returns the EventContext ctx carries; zero when none.
func EventContextFrom(ctx context.Context) EventContext {
	ec, _ := ctx.Value(eventContextKey{}).(EventContext)
	return ec
}

// Event is one entry of the audit trail.
type Event struct {
	ID        string
	Type      string
	CreatedAt time.Time
	// Token is the token as the change left it; its TicketHash is never
	// kept.
	Token Token
	// ErrorCode, for a redeem_refused event, is the code the caller was
	// answered with.
	ErrorCode string
	Context   EventContext
}

// EventFilter selects and pages events for Store.ListEvents. Zero fields do
// not filter.
type EventFilter struct {
	After  string // an event id: the page starts after it
	Type   string
	UserID string
	Limit  int
}

// Limits of event pages.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 500
)

// EventIDPrefix begins every event id.
const EventIDPrefix = "evt_"

// eventIDPart is how many base62 characters each half of an event id has:
// 62^11 > 2^64.
const eventIDPart = 11

// NewEventID returns the id of the event at position (major, minor) in the
// log's order. Ids are fixed-width base62, so they sort as the positions do,
// byte by byte.
func NewEventID(major, minor uint64) string {
	var b [len(EventIDPrefix) + 2*eventIDPart]byte
	copy(b[:], EventIDPrefix)
	for part, v := range []uint64{major, minor} {
		end := len(EventIDPrefix) + (part+1)*eventIDPart
		for i := end - 1; i >= end-eventIDPart; i-- {
			b[i] = base62[v%62]
			v /= 62
		}
	}
	return string(b[:])
}

// ParseEventID returns the position an event id names; ok is false for
// anything NewEventID cannot have made.
func ParseEventID(id string) (major, minor uint64, ok bool) {
	rest, found := strings.CutPrefix(id, EventIDPrefix)
	if !found || len(rest) != 2*eventIDPart {
		return 0, 0, false
	}
	var out [2]uint64
	for part := range out {
		var v uint64
		for _, c := range []byte(rest[part*eventIDPart : (part+1)*eventIDPart]) {
			d := strings.IndexByte(base62, c)
			if d < 0 {
				return 0, 0, false
			}
			hi := v * 62
			if hi/62 != v || hi+uint64(d) < hi {
				return 0, 0, false // past 2^64
			}
			v = hi + uint64(d)
		}
		out[part] = v
	}
	// Positions are stored as signed 64-bit integers.
	if out[0] > 1<<63-1 || out[1] > 1<<63-1 {
		return 0, 0, false
	}
	return out[0], out[1], true
}

// checkEventFilter validates f as ListEvents takes it.
func checkEventFilter(f EventFilter) error {
	switch {
	case f.Limit < 1 || f.Limit > MaxEventLimit:
		return ParamValueInvalid("limit", fmt.Sprintf("must be between 1 and %d.", MaxEventLimit))
	case f.Type != "" && !ValidEventType(f.Type):
		return ParamValueInvalid("type", "must be an event type, such as sign_in_token.accepted.")
	case len(f.UserID) > MaxIDParamBytes:
		return ParamValueInvalid("user_id", fmt.Sprintf("must be at most %d bytes.", MaxIDParamBytes))
	}
	if f.After != "" {
		if _, _, ok := ParseEventID(f.After); !ok {
			return ParamValueInvalid("after", "must be the id of an event.")
		}
	}
	return nil
}

// ListEvents returns the events matching f, oldest first, and whether more
// follow.
func (s *Service) ListEvents(ctx context.Context, f EventFilter) ([]Event, bool, error) {
	if err := checkEventFilter(f); err != nil {
		return nil, false, err
	}
	return s.store.ListEvents(ctx, f)
}

// recordRefusal records that a redemption was refused by the stored token
// tok. Only refusals that name a stored token are recorded: a ticket that
// fails its signature, or names no stored token, is counted in metrics
// only, so that a flood of garbage cannot flood the log. The refusal is
// its own small insert, at the redemption's now; failing to record it does
// not change the answer, which changed nothing.
func (s *Service) recordRefusal(ctx context.Context, tok Token, refusal error, now time.Time) {
	if tok.ID == "" {
		return
	}
	code := ErrorCode(refusal)
	_ = s.store.AppendEvent(ctx, Event{Type: EventType(tok.Kind(), VerbRedeemRefused), CreatedAt: now, Token: tok, ErrorCode: code})
}

// WebhookBacklog is how far webhook deliveries are behind, as a store sees
// it, for metrics.
type WebhookBacklog struct {
	// Unrelayed is how many events have not been enqueued for delivery yet.
	Unrelayed int64
	// Jobs counts the deliveries not finished, by queue state (available,
	// scheduled, retryable, running, pending).
	Jobs map[string]int64
	// Oldest is when the oldest undelivered event was recorded, or, once
	// enqueued, when it was enqueued (a relay interval later); zero: none.
	Oldest time.Time
}
