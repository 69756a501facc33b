package http

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// The hosted sign-in page: GET (and HEAD) shows what a ticket is for and a
// Continue button, without consuming anything; the button's POST sends the
// person on, with the ticket, to the application's page, which redeems it.
// A mail scanner that fetches the link therefore burns nothing.

// PageObserver is told of each step of the hosted sign-in page (PageView or
// PageContinue) with nil or the error its ticket was refused with.
type PageObserver func(step string, err error)

// The steps a PageObserver is told of.
const (
	PageView     = "view"
	PageContinue = "continue"
)

//go:embed page/signin.html page/style.css
var pageFiles embed.FS

var (
	pageTemplate = template.Must(template.ParseFS(pageFiles, "page/signin.html"))
	pageCSS      = mustRead("page/style.css")
	// pageCSSHash allows the inline style sheet, and nothing else, in the CSP.
	pageCSSHash = func() string {
		sum := sha256.Sum256(pageCSS)
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}()
)

func mustRead(name string) []byte {
	b, err := pageFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// pageData is what the template shows.
type pageData struct {
	Title, Heading   string
	Message, Next    string       // a refused ticket: what happened, what to do
	Continue         bool         // a good ticket: show who, where and the button
	UserID, Host     string       // who signs in, and the destination's host
	Actor            string       // an actor token's actor.sub: who acts as UserID
	Action           string       // where the button posts
	Ticket           string       // posted back with the button
	TraceID          string       // shown so support can find the request
	CSS              template.CSS // the inline style sheet, allowed by its hash
	status           int
	formActionOrigin string // the destination, which the POST's redirect goes to
}

// refusedPage is the page, and its status, for a ticket refused with code.
type refusedPage struct {
	status                 int
	heading, message, next string
}

// refusedPages holds what the page says for each error code; a code not in
// it gets refusedInternal.
var refusedPages = map[string]refusedPage{
	tokens.CodeTicketExpired: {http.StatusGone, "This sign-in link has expired",
		"Sign-in links work for a limited time only, and this one's time is up.",
		"Go back to the application and ask for a new sign-in link."},
	tokens.CodeAlreadyUsed: {http.StatusGone, "This sign-in link was already used",
		"Each sign-in link works once, and this one has been used.",
		"If it was you, you may already be signed in. Otherwise ask the application for a new link, and tell its support if you did not use this one."},
	tokens.CodeRevoked: {http.StatusGone, "This sign-in link was cancelled",
		"The sender cancelled this sign-in link, so it no longer works.",
		"Ask the application for a new sign-in link."},
	tokens.CodeTicketInvalid: invalidPage,
	tokens.CodeCannotBeUsed:  invalidPage,
	tokens.CodeParamMissing:  invalidPage,
	CodeBodyInvalid:          invalidPage,
	CodeBodyTooLarge: {http.StatusRequestEntityTooLarge, "This sign-in request is too large",
		"The request sent to this page was larger than any sign-in link.",
		"Open the link from your message again."},
	tokens.CodeUnavailable: {http.StatusServiceUnavailable, "Sign-in is unavailable right now",
		"The sign-in service cannot check your link at the moment. Nothing was used up.",
		"Try again in a minute with the same link."},
	codeNoDestination: {http.StatusConflict, "This sign-in link has nowhere to go",
		"The link is valid, but no application page is configured to finish signing in.",
		"Tell whoever sent the link; it stays valid until it expires."},
}

var (
	invalidPage = refusedPage{http.StatusBadRequest, "This sign-in link is not valid",
		"The link is incomplete, was changed, or was not issued by this service.",
		"Open the whole link from your message (some mail programs break long links across lines), or ask the application for a new one."}
	refusedInternal = refusedPage{http.StatusInternalServerError, "Something went wrong",
		"The sign-in page could not check your link. Nothing was used up.",
		"Try again; if it keeps happening, contact support with the reference below."}
)

// codeNoDestination is the page's own refusal: a good ticket with neither a
// redirect_url nor a configured sign-in page to go on to. It is never an API
// error code.
const codeNoDestination = "sign_in_page_no_destination"

var errNoDestination = &tokens.Error{Code: codeNoDestination, Message: "no destination",
	LongMessage: "The token has no redirect_url and no SIGN_IN_URL is configured."}

// signInPage answers GET and HEAD /sign-in?__clerk_ticket=...: it verifies
// the ticket without consuming it, and shows who signs in where with a
// Continue button, or why the link does not work.
func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("__clerk_ticket")
	tok, dest, err := s.pageTicket(r, ticket)
	s.pageObserver(PageView, err)
	if err != nil {
		s.writeRefusedPage(w, r, err)
		return
	}
	s.writePage(w, r, pageData{
		Title: "Sign in to " + dest.Host, Heading: "Continue signing in",
		Continue: true, UserID: tok.UserID, Host: dest.Hostname(), Actor: actorOf(tok),
		Action: s.pageURL.String(), Ticket: ticket,
		status: http.StatusOK, formActionOrigin: dest.Scheme + "://" + dest.Host,
	})
}

// actorOf is the sub of an actor token's actor, "" for a sign-in token.
func actorOf(tok tokens.Token) string {
	sub, _ := tokens.ActorSubject(tok.Actor)
	return sub
}

// signInContinue answers the Continue button's POST /sign-in (form field
// ticket) with 303 See Other to the application's page with the ticket
// added. It consumes nothing; a ticket a redeem would refuse gets the
// refusal's page, never a redirect.
func (s *Server) signInContinue(w http.ResponseWriter, r *http.Request) {
	ticket, err := ticketParam(r)
	var dest *url.URL
	if err == nil {
		_, dest, err = s.pageTicket(r, ticket)
	}
	s.pageObserver(PageContinue, err)
	if err != nil {
		s.writeRefusedPage(w, r, err)
		return
	}
	setPageHeaders(w.Header(), "'none'")
	w.Header().Set("Location", signInURL(dest, ticket))
	w.WriteHeader(http.StatusSeeOther)
}

// pageTicket verifies ticket and finds where it is redeemed.
func (s *Server) pageTicket(r *http.Request, ticket string) (tokens.Token, *url.URL, error) {
	tok, err := s.service.Verify(r.Context(), ticket)
	if err != nil {
		return tokens.Token{}, nil, err
	}
	dest := s.destination(tok)
	if dest == nil {
		requestLog(r.Context()).Warn().Str("token_id", tok.ID).
			Msg("sign-in page: token without redirect_url and no SIGN_IN_URL configured")
		return tokens.Token{}, nil, errNoDestination
	}
	return tok, dest, nil
}

// writeRefusedPage is the page for a ticket refused with err: what
// happened and what to do next, with a 4xx status (5xx when the fault is
// ours). Errors that are not *tokens.Error are logged, as writeError does.
func (s *Server) writeRefusedPage(w http.ResponseWriter, r *http.Request, err error) {
	page := refusedInternal
	var e *tokens.Error
	if errors.As(err, &e) {
		if p, ok := refusedPages[e.Code]; ok {
			page = p
		}
	}
	if page.status >= 500 {
		requestLog(r.Context()).Error().Err(err).Msg("sign-in page")
	}
	s.writePage(w, r, pageData{Title: page.heading, Heading: page.heading,
		Message: page.message, Next: page.next, status: page.status})
}

// writePage renders d with the page's security headers.
func (s *Server) writePage(w http.ResponseWriter, r *http.Request, d pageData) {
	d.TraceID, d.CSS = traceID(r.Context()), template.CSS(pageCSS)
	var body bytes.Buffer
	if err := pageTemplate.Execute(&body, d); err != nil {
		// Our own template and data: it always renders.
		panic("http: cannot render the sign-in page: " + err.Error())
	}
	formAction := "'none'"
	if d.Continue {
		// Browsers hold the redirect after the POST to form-action too.
		formAction = "'self' " + d.formActionOrigin
	}
	h := w.Header()
	setPageHeaders(h, formAction)
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(d.status)
	w.Write(body.Bytes())
}

// setPageHeaders sets the headers every answer of the sign-in page carries:
// never cached, never sent on as a referrer, never framed, no script.
func setPageHeaders(h http.Header, formAction string) {
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src "+pageCSSHash+
		"; img-src 'none'; base-uri 'none'; form-action "+formAction+"; frame-ancestors 'none'")
}
