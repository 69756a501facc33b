package http

import (
	"strconv"
	"sync"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// jsonAppender is a response that writes its own JSON, byte for byte what
// encoding/json would write, without reflection. The token object is in
// every hot response, so it is one.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// bodyBuffers keeps response buffers between requests.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendJSON appends o as encoding/json encodes tokenObject: fields in
// declaration order, omitempty fields left out when empty.
func (o tokenObject) appendJSON(b []byte) []byte {
	b = append(b, `{"object":`...)
	b = tokens.AppendJSONString(b, o.Object)
	b = append(b, `,"id":`...)
	b = tokens.AppendJSONString(b, o.ID)
	b = append(b, `,"user_id":`...)
	b = tokens.AppendJSONString(b, o.UserID)
	b = append(b, `,"status":`...)
	b = tokens.AppendJSONString(b, o.Status)
	if o.Token != "" {
		b = append(b, `,"token":`...)
		b = tokens.AppendJSONString(b, o.Token)
	}
	if o.URL != "" {
		b = append(b, `,"url":`...)
		b = tokens.AppendJSONString(b, o.URL)
	}
	if o.OrgID != "" {
		b = append(b, `,"org_id":`...)
		b = tokens.AppendJSONString(b, o.OrgID)
	}
	b = append(b, `,"created_at":`...)
	b = strconv.AppendInt(b, o.CreatedAt, 10)
	b = append(b, `,"updated_at":`...)
	b = strconv.AppendInt(b, o.UpdatedAt, 10)
	b = append(b, `,"expires_at":`...)
	b = strconv.AppendInt(b, o.ExpiresAt, 10)
	if o.AcceptedAt != nil {
		b = append(b, `,"accepted_at":`...)
		b = strconv.AppendInt(b, *o.AcceptedAt, 10)
	}
	if o.RevokedAt != nil {
		b = append(b, `,"revoked_at":`...)
		b = strconv.AppendInt(b, *o.RevokedAt, 10)
	}
	return append(b, '}')
}
