package http

import (
	"encoding/json"
	"net/url"
	"time"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// tokenObject is the wire form of a token of either kind: object says which.
// A sign-in token may have org_id, redirect_url and metadata; an actor token
// has actor and session_max_duration_in_seconds.
type tokenObject struct {
	Object     string `json:"object"`
	ID         string `json:"id"`
	UserID     string `json:"user_id"`
	Status     string `json:"status"`
	Token      string `json:"token,omitempty"`
	URL        string `json:"url,omitempty"`
	Code       string `json:"code,omitempty"`
	OrgID      string `json:"org_id,omitempty"`
	CreatedAt  int64  `json:"created_at"`
	UpdatedAt  int64  `json:"updated_at"`
	ExpiresAt  int64  `json:"expires_at"`
	AcceptedAt *int64 `json:"accepted_at,omitempty"`
	RevokedAt  *int64 `json:"revoked_at,omitempty"`
	// RedirectURL and Metadata are shown wherever the token is, when set.
	RedirectURL string          `json:"redirect_url,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	// Actor and SessionMaxDuration (seconds) are an actor token's.
	Actor              json.RawMessage `json:"actor,omitempty"`
	SessionMaxDuration int64           `json:"session_max_duration_in_seconds,omitempty"`
}

// listObject is Clerk's paginated list shape.
type listObject struct {
	Data       []tokenObject `json:"data"`
	TotalCount int           `json:"total_count"`
}

func newTokenObject(t tokens.Token) tokenObject {
	return tokenObject{
		Object:     string(t.Kind()),
		ID:         t.ID,
		UserID:     t.UserID,
		Status:     string(t.Status),
		OrgID:      t.OrgID,
		CreatedAt:  t.CreatedAt.UnixMilli(),
		UpdatedAt:  t.UpdatedAt.UnixMilli(),
		ExpiresAt:  t.ExpiresAt.UnixMilli(),
		AcceptedAt: millis(t.AcceptedAt),
		RevokedAt:  millis(t.RevokedAt),

		RedirectURL: t.RedirectURL,
		Metadata:    t.Metadata,

		Actor:              t.Actor,
		SessionMaxDuration: int64(t.SessionMaxDuration / time.Second),
	}
}

func millis(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

// linkURL is the url a new token's link has: the hosted sign-in page when
// there is one, else the token's redirect_url, else the configured sign-in
// page, each with the ticket added; empty when there is none of them.
func (s *Server) linkURL(tok tokens.Token, ticket string) string {
	if s.publicURL != nil {
		return signInURL(s.pageURL, ticket)
	}
	return signInURL(s.destination(tok), ticket)
}

// destination is where a token's ticket is redeemed: its redirect_url, else
// the configured sign-in page; nil when there is neither.
func (s *Server) destination(tok tokens.Token) *url.URL {
	if tok.RedirectURL != "" {
		if u, err := url.Parse(tok.RedirectURL); err == nil {
			return u
		}
	}
	return s.signInURL
}

// signInURL adds the ticket to the configured sign-in page's query; it is
// empty when no sign-in page is configured.
func signInURL(base *url.URL, ticket string) string {
	if base == nil {
		return ""
	}
	u := *base
	q := u.Query()
	q.Set("__clerk_ticket", ticket)
	u.RawQuery = q.Encode()
	return u.String()
}

// eventObject is the wire form of an event of the audit trail. Its data is
// the token object as the change left it, never with a ticket or a code.
type eventObject struct {
	Object    string             `json:"object"`
	ID        string             `json:"id"`
	Type      string             `json:"type"`
	CreatedAt int64              `json:"created_at"`
	Data      tokenObject        `json:"data"`
	ErrorCode string             `json:"error_code,omitempty"` // redeem_refused: the code the caller was answered
	Context   eventContextObject `json:"context"`
}

type eventContextObject struct {
	Key       string `json:"key"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	TraceID   string `json:"trace_id"`
}

// eventListObject is a page of events, oldest first.
type eventListObject struct {
	Data    []eventObject `json:"data"`
	HasMore bool          `json:"has_more"`
}

func newEventObject(e tokens.Event) eventObject {
	return eventObject{Object: "event", ID: e.ID, Type: e.Type, CreatedAt: e.CreatedAt.UnixMilli(),
		Data: newTokenObject(e.Token), ErrorCode: e.ErrorCode,
		Context: eventContextObject{Key: e.Context.Key, IP: e.Context.IP, UserAgent: e.Context.UserAgent, TraceID: e.Context.TraceID}}
}

// EventJSON is the JSON of e as GET /v1/events shows it, the body of its
// webhook deliveries.
func EventJSON(e tokens.Event) ([]byte, error) { return json.Marshal(newEventObject(e)) }
