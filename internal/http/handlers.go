package http

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// create issues a token of kind: a sign-in token takes Clerk's body and our
// extensions to it, an actor token Clerk's actor token body.
func (s *Server) create(kind tokens.Kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := readParams(r)
		if err != nil {
			return err
		}
		in := tokens.CreateParams{Kind: kind, IdempotencyKey: r.Header.Get("Idempotency-Key")}
		if in.UserID, err = p.string("user_id"); err != nil {
			return err
		}
		if in.ExpiresInSeconds, err = p.int64("expires_in_seconds"); err != nil {
			return err
		}
		if kind == tokens.KindActor {
			err = actorParams(p, &in)
		} else {
			err = signInParams(p, &in)
		}
		if err != nil {
			return err
		}
		created, err := s.service.Create(r.Context(), in)
		if err != nil {
			return err
		}
		obj := newTokenObject(created.Token)
		obj.Token = created.Ticket
		obj.Code = created.Code
		obj.URL = s.linkURL(created.Token, created.Ticket)
		writeJSON(w, http.StatusOK, obj)
		return nil
	}
}

// signInParams reads what only a sign-in token's create takes.
func signInParams(p params, in *tokens.CreateParams) error {
	var err error
	if in.OrgID, err = p.string("org_id"); err != nil {
		return err
	}
	if in.CodeLength, err = p.int64("code_length"); err != nil {
		return err
	}
	if in.RevokePrevious, err = p.bool("revoke_previous"); err != nil {
		return err
	}
	if in.RedirectURL, err = p.string("redirect_url"); err != nil {
		return err
	}
	in.Metadata, err = p.object("metadata")
	return err
}

// actorParams reads what only an actor token's create takes.
func actorParams(p params, in *tokens.CreateParams) error {
	var err error
	if in.Actor, err = p.object("actor"); err != nil {
		return err
	}
	in.SessionMaxDurationInSeconds, err = p.int64("session_max_duration_in_seconds")
	return err
}

func (s *Server) get(kind tokens.Kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok, err := s.service.Get(r.Context(), kind, chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, newTokenObject(tok))
		return nil
	}
}

func (s *Server) list(kind tokens.Kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		f := tokens.ListFilter{Kind: kind, UserID: q.Get("user_id"), Status: tokens.Status(q.Get("status"))}
		var err error
		if f.Limit, err = queryInt(q.Get("limit"), "limit", tokens.DefaultListLimit); err != nil {
			return err
		}
		if f.Offset, err = queryInt(q.Get("offset"), "offset", 0); err != nil {
			return err
		}
		found, total, err := s.service.List(r.Context(), f)
		if err != nil {
			return err
		}
		out := listObject{Data: make([]tokenObject, 0, len(found)), TotalCount: total}
		for _, t := range found {
			out.Data = append(out.Data, newTokenObject(t))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

// listEvents pages through the audit trail, oldest first.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := tokens.EventFilter{After: q.Get("after"), Type: q.Get("type"), UserID: q.Get("user_id")}
	var err error
	if f.Limit, err = queryInt(q.Get("limit"), "limit", tokens.DefaultEventLimit); err != nil {
		return err
	}
	found, more, err := s.service.ListEvents(r.Context(), f)
	if err != nil {
		return err
	}
	out := eventListObject{Data: make([]eventObject, 0, len(found)), HasMore: more}
	for _, e := range found {
		out.Data = append(out.Data, newEventObject(e))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// queryInt parses an optional integer query parameter; "" gives def.
func queryInt(v, name string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, tokens.ParamValueInvalid(name, "must be an integer.")
	}
	return n, nil
}

func (s *Server) revoke(kind tokens.Kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		// The body is ignored: none, {} and the Go SDK's literal null all revoke.
		tok, err := s.service.Revoke(r.Context(), kind, chi.URLParam(r, "id"), r.Header.Get("Idempotency-Key"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, newTokenObject(tok))
		return nil
	}
}

// ticketParam reads the ticket field of a verify body.
func ticketParam(r *http.Request) (string, error) {
	p, err := readParams(r)
	if err != nil {
		return "", err
	}
	return p.string("ticket")
}

// redeem redeems a ticket, or a user's one-time code.
func (s *Server) redeem(w http.ResponseWriter, r *http.Request) error {
	p, err := readParams(r)
	if err != nil {
		return err
	}
	in := tokens.RedeemParams{IdempotencyKey: r.Header.Get("Idempotency-Key")}
	for _, f := range [...]struct {
		name string
		v    *string
	}{{"ticket", &in.Ticket}, {"user_id", &in.UserID}, {"code", &in.Code}} {
		if *f.v, err = p.string(f.name); err != nil {
			return err
		}
	}
	if in.Ticket == "" && in.Code != "" && s.codeLimit != nil && s.codeLimit.OnLimit(w, r, "user:"+in.UserID) {
		return errTooManyRequests
	}
	tok, err := s.service.Redeem(r.Context(), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newTokenObject(tok))
	return nil
}

func (s *Server) verify(w http.ResponseWriter, r *http.Request) error {
	ticket, err := ticketParam(r)
	if err != nil {
		return err
	}
	tok, err := s.service.Verify(r.Context(), ticket)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newTokenObject(tok))
	return nil
}

// revokeUser revokes every pending token of the user the path names.
func (s *Server) revokeUser(w http.ResponseWriter, r *http.Request) error {
	revoked, err := s.service.RevokeUser(r.Context(), chi.URLParam(r, "user_id"))
	if err != nil {
		return err
	}
	out := listObject{Data: make([]tokenObject, 0, len(revoked)), TotalCount: len(revoked)}
	for _, t := range revoked {
		out.Data = append(out.Data, newTokenObject(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{"keys": s.service.Tickets().Keys().JWKS()})
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.service.Ready(ctx); err != nil {
		return fmt.Errorf("%w: %v", tokens.ErrUnavailable, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func notFound(w http.ResponseWriter, r *http.Request) error { return errRouteNotFound }

// methodNotAllowed answers 405 with an Allow header listing the methods the
// path does serve.
func methodNotAllowed(routes chi.Routes) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		path := r.URL.Path
		if len(path) > 1 {
			path = strings.TrimSuffix(path, "/")
		}
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if routes.Match(chi.NewRouteContext(), m, path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		return errMethodNotAllowed
	}
}
