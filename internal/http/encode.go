package http

import (
	"encoding/json"
	"strconv"
	"sync"
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
	b = appendJSONString(b, o.Object)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, o.ID)
	b = append(b, `,"user_id":`...)
	b = appendJSONString(b, o.UserID)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, o.Status)
	if o.Token != "" {
		b = append(b, `,"token":`...)
		b = appendJSONString(b, o.Token)
	}
	if o.URL != "" {
		b = append(b, `,"url":`...)
		b = appendJSONString(b, o.URL)
	}
	if o.Code != "" {
		b = append(b, `,"code":`...)
		b = appendJSONString(b, o.Code)
	}
	if o.OrgID != "" {
		b = append(b, `,"org_id":`...)
		b = appendJSONString(b, o.OrgID)
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
	if o.RedirectURL != "" {
		b = append(b, `,"redirect_url":`...)
		b = appendJSONString(b, o.RedirectURL)
	}
	if len(o.Metadata) > 0 {
		b = appendRawJSON(b, `,"metadata":`, o.Metadata)
	}
	if len(o.Actor) > 0 {
		b = appendRawJSON(b, `,"actor":`, o.Actor)
	}
	if o.SessionMaxDuration != 0 {
		b = append(b, `,"session_max_duration_in_seconds":`...)
		b = strconv.AppendInt(b, o.SessionMaxDuration, 10)
	}
	return append(b, '}')
}

// appendRawJSON appends a field of a stored JSON object. It is rare, and
// encoding/json's compacting and escaping are kept as they are.
func appendRawJSON(b []byte, field string, v json.RawMessage) []byte {
	m, err := json.Marshal(v)
	if err != nil {
		m = []byte("null") // never stored: both are checked to be objects
	}
	b = append(b, field...)
	return append(b, m...)
}

// appendJSONString appends s as a JSON string, exactly as encoding/json
// writes it. Plain printable ASCII, what ids, statuses and tickets are, is
// copied as is; anything else goes through encoding/json, so its escaping
// (HTML characters, U+2028, invalid UTF-8) is kept.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s) // a string always encodes
			return append(b, quoted...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
