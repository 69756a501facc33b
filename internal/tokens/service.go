package tokens

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Limits on what callers may send.
const (
	MaxIDParamBytes   = 256  // user_id and org_id
	MaxIdempotencyKey = 255  // Idempotency-Key header
	DefaultListLimit  = 10   // list page size when none is given
	MaxListLimit      = 500  // largest list page
	MaxMetadataBytes  = 4096 // metadata, encoded
	IdempotencyWindow = 24 * time.Hour
)

// UserDirectory answers whether a user exists. The service asks it, when one
// is configured, before issuing a ticket.
type UserDirectory interface {
	// UserExists returns false for a user the directory does not know, and an
	// error when it could not tell.
	UserExists(ctx context.Context, userID string) (bool, error)
}

// Config configures a Service.
type Config struct {
	Store            Store
	Ticketer         *Ticketer
	Codes            *Codes        // makes and checks one-time codes; nil: codes are refused
	Users            UserDirectory // optional
	DefaultExpiresIn time.Duration
	MaxExpiresIn     time.Duration
	CodeMaxAttempts  int              // wrong codes a token takes; 0 means DefaultCodeMaxAttempts
	Now              func() time.Time // defaults to time.Now
	Observer         Observer         // optional, told of every change of state
	Redirects        RedirectPolicy   // which redirect_url values create accepts; zero: none
	// Tracer, optional, records ticket.sign and ticket.verify spans; nil
	// (tracing off) records none.
	Tracer trace.Tracer
}

// Service carries out the verbs on sign-in tokens.
type Service struct {
	store       Store
	tickets     *Ticketer
	codes       *Codes
	users       UserDirectory
	defaultTTL  time.Duration
	maxTTL      time.Duration
	maxAttempts int
	clock       func() time.Time
	observer    Observer
	redirects   RedirectPolicy
	tracer      trace.Tracer // nil: no spans
}

// NewService returns a Service for cfg.
func NewService(cfg Config) *Service {
	s := &Service{store: cfg.Store, tickets: cfg.Ticketer, codes: cfg.Codes, users: cfg.Users,
		defaultTTL: cfg.DefaultExpiresIn, maxTTL: cfg.MaxExpiresIn, maxAttempts: cfg.CodeMaxAttempts,
		clock: cfg.Now, observer: cfg.Observer, redirects: cfg.Redirects, tracer: cfg.Tracer}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.observer == nil {
		s.observer = nopObserver{}
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = DefaultCodeMaxAttempts
	}
	return s
}

// now is the service's clock at the millisecond resolution the API exposes.
func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Millisecond) }

// Defaults and limits of actor tokens, Clerk's.
const (
	DefaultActorExpiresIn          = time.Hour
	DefaultActorSessionMaxDuration = 30 * time.Minute
	MaxActorBytes                  = 4 << 10
)

// CreateParams are the inputs of Create.
type CreateParams struct {
	Kind             Kind // "" is KindSignIn
	UserID           string
	OrgID            string
	ExpiresInSeconds *int64 // nil means the configured default
	CodeLength       *int64 // optional: the token also gets a one-time code of this many digits
	RevokePrevious   bool   // revoke the user's other pending tokens in the same transaction
	IdempotencyKey   string // optional; a retried create with the same key returns the same token
	RedirectURL      string // optional; must pass the service's RedirectPolicy
	Metadata         []byte // optional; a compact JSON object, stored and shown, never in the ticket
	// Actor, for an actor token (required there), is the JSON object naming
	// who acts, with a string "sub"; its sub goes in the ticket's act claim.
	Actor []byte
	// SessionMaxDurationInSeconds, for an actor token; nil: 1800.
	SessionMaxDurationInSeconds *int64
}

// Created is a new token with its ticket, and its code when one was asked
// for; neither is ever shown again.
type Created struct {
	Token  Token
	Ticket string
	Code   string
}

// Create issues a new pending token and its ticket.
func (s *Service) Create(ctx context.Context, p CreateParams) (Created, error) {
	if err := s.validateCreate(&p); err != nil {
		return Created{}, err
	}
	if s.users != nil {
		ok, err := s.users.UserExists(ctx, p.UserID)
		if err != nil {
			return Created{}, fmt.Errorf("%w: %v", ErrUserLookupFailed, err)
		}
		if !ok {
			return Created{}, ErrUserNotFound
		}
	}
	ttl := s.defaultTTL
	if p.Kind == KindActor {
		ttl = DefaultActorExpiresIn
	}
	if p.ExpiresInSeconds != nil {
		ttl = time.Duration(*p.ExpiresInSeconds) * time.Second
	}
	now := s.now()
	tok := Token{ID: p.Kind.NewID(now), UserID: p.UserID, OrgID: p.OrgID, Status: StatusPending,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(ttl), RedirectURL: p.RedirectURL, Metadata: p.Metadata}
	if p.Kind == KindActor {
		tok.Actor, tok.SessionMaxDuration = p.Actor, DefaultActorSessionMaxDuration
		if v := p.SessionMaxDurationInSeconds; v != nil {
			tok.SessionMaxDuration = time.Duration(*v) * time.Second
		}
	}
	ticket, err := s.sign(ctx, tok)
	if err != nil {
		return Created{}, fmt.Errorf("sign ticket: %w", err)
	}
	tok.TicketHash = HashTicket(ticket)
	c := Creation{Token: tok, RevokePrevious: p.RevokePrevious}
	var code string
	if p.CodeLength != nil {
		var stored StoredCode
		code, stored = s.codes.New(tok.ID, int(*p.CodeLength))
		c.Code = &stored
	}
	if p.IdempotencyKey != "" {
		c.Key = &Idempotency{Key: p.IdempotencyKey, RequestHash: createRequestHash(p), NotBefore: now.Add(-IdempotencyWindow)}
	}
	res, err := s.store.Create(ctx, c)
	if err != nil {
		return Created{}, err
	}
	if res.Created {
		s.observer.Created(tok)
		for _, t := range res.Revoked {
			s.observer.Revoked(t)
		}
		return Created{Token: tok, Ticket: ticket, Code: code}, nil
	}
	return s.replayCreate(ctx, p, res)
}

// replayCreate answers a create retried under its key: the same claims
// signed again give the same ticket, and the same token id gives the same
// code, so nothing but their hashes ever needs to be kept.
func (s *Service) replayCreate(ctx context.Context, p CreateParams, res CreateResult) (Created, error) {
	stored := res.Token
	ticket, err := s.sign(ctx, stored)
	if err != nil {
		return Created{}, fmt.Errorf("sign ticket: %w", err)
	}
	if subtle.ConstantTimeCompare(HashTicket(ticket), stored.TicketHash) != 1 {
		// The signing key changed since the first request: the first ticket
		// cannot be rebuilt, and issuing another would break the key's promise.
		return Created{}, ErrIdempotencyMismatch
	}
	out := Created{Token: stored, Ticket: ticket}
	if p.CodeLength != nil {
		code, ok := "", res.Code != nil
		if ok {
			code, ok = s.codes.Rebuild(stored.ID, int(*p.CodeLength), *res.Code)
		}
		if !ok { // the code's secret is gone: as for the signing key
			return Created{}, ErrIdempotencyMismatch
		}
		out.Code = code
	}
	return out, nil
}

// validateCreate checks p and puts its redirect_url in normalised form.
func (s *Service) validateCreate(p *CreateParams) error {
	if p.Kind == "" {
		p.Kind = KindSignIn
	}
	if err := s.validateKind(p); err != nil {
		return err
	}
	switch {
	case p.UserID == "":
		return ParamMissing("user_id")
	case len(p.UserID) > MaxIDParamBytes || !utf8.ValidString(p.UserID):
		return ParamValueInvalid("user_id", fmt.Sprintf("must be valid UTF-8 of at most %d bytes.", MaxIDParamBytes))
	case len(p.OrgID) > MaxIDParamBytes || !utf8.ValidString(p.OrgID):
		return ParamValueInvalid("org_id", fmt.Sprintf("must be valid UTF-8 of at most %d bytes.", MaxIDParamBytes))
	}
	if err := validKey(p.IdempotencyKey); err != nil {
		return err
	}
	if p.CodeLength != nil {
		if v := *p.CodeLength; v < MinCodeLength || v > MaxCodeLength {
			return ParamValueInvalid("code_length", fmt.Sprintf("must be between %d and %d.", MinCodeLength, MaxCodeLength))
		}
		if s.codes == nil {
			return ParamValueInvalid("code_length", "one-time codes are not configured (CODE_SECRETS).")
		}
	}
	if len(p.Metadata) > MaxMetadataBytes {
		return ParamValueInvalid("metadata", fmt.Sprintf("must be at most %d bytes encoded.", MaxMetadataBytes))
	}
	if p.RedirectURL != "" {
		u, err := s.redirects.Check(p.RedirectURL)
		if err != nil {
			return err
		}
		p.RedirectURL = u
	}
	if p.ExpiresInSeconds != nil {
		max := int64(s.maxTTL / time.Second)
		if v := *p.ExpiresInSeconds; v < 1 || v > max {
			return ParamValueInvalid("expires_in_seconds", fmt.Sprintf("must be between 1 and %d.", max))
		}
	}
	return nil
}

// validateKind checks what only one kind of token takes.
func (s *Service) validateKind(p *CreateParams) error {
	switch p.Kind {
	case KindSignIn:
		if p.Actor != nil || p.SessionMaxDurationInSeconds != nil {
			return fmt.Errorf("a sign-in token with an actor")
		}
		return nil
	case KindActor:
		if p.CodeLength != nil || p.RevokePrevious || p.RedirectURL != "" || p.Metadata != nil {
			return fmt.Errorf("an actor token with sign-in token parameters")
		}
	default:
		return fmt.Errorf("unknown kind %q", p.Kind)
	}
	if p.Actor == nil {
		return ParamMissing("actor")
	}
	if len(p.Actor) > MaxActorBytes {
		return ParamValueInvalid("actor", fmt.Sprintf("must be at most %d bytes encoded.", MaxActorBytes))
	}
	if _, ok := ActorSubject(p.Actor); !ok {
		return ParamValueInvalid("actor", "must include a sub: the id of the user who acts, a non-empty string.")
	}
	if v := p.SessionMaxDurationInSeconds; v != nil && (*v < 1 || *v > int64(s.maxTTL/time.Second)) {
		return ParamValueInvalid("session_max_duration_in_seconds", fmt.Sprintf("must be between 1 and %d.", int64(s.maxTTL/time.Second)))
	}
	return nil
}

// createRequestHash identifies a create request's parameters, so a reused
// Idempotency-Key with different parameters can be told apart.
func createRequestHash(p CreateParams) []byte {
	h := sha256.New()
	exp := "default"
	if p.ExpiresInSeconds != nil {
		exp = fmt.Sprint(*p.ExpiresInSeconds)
	}
	// Length-prefixed so no two parameter sets share an encoding; what came
	// later is added only when set, so keys of older creates keep their hash.
	fmt.Fprintf(h, "%d:%s|%d:%s|%s", len(p.UserID), p.UserID, len(p.OrgID), p.OrgID, exp)
	if p.CodeLength != nil {
		fmt.Fprintf(h, "|code:%d", *p.CodeLength)
	}
	if p.RevokePrevious {
		fmt.Fprint(h, "|revoke_previous")
	}
	if p.RedirectURL != "" || p.Metadata != nil {
		// Only when given, so keys recorded before these fields existed still match.
		fmt.Fprintf(h, "|%d:%s|%d:%s", len(p.RedirectURL), p.RedirectURL, len(p.Metadata), p.Metadata)
	}
	if p.Kind == KindActor {
		session := "default"
		if p.SessionMaxDurationInSeconds != nil {
			session = fmt.Sprint(*p.SessionMaxDurationInSeconds)
		}
		fmt.Fprintf(h, "|actor:%d:%s|%s", len(p.Actor), p.Actor, session)
	}
	return h.Sum(nil)
}

// Get returns one token of the given kind.
func (s *Service) Get(ctx context.Context, kind Kind, id string) (Token, error) {
	if !ValidID(id) || KindOf(id) != kind {
		return Token{}, ErrNotFound
	}
	return s.store.Get(ctx, id)
}

// List returns the tokens matching f, newest first, and how many match in
// all. f.Limit must be from 1 to MaxListLimit.
func (s *Service) List(ctx context.Context, f ListFilter) ([]Token, int, error) {
	switch {
	case f.Limit < 1 || f.Limit > MaxListLimit:
		return nil, 0, ParamValueInvalid("limit", fmt.Sprintf("must be between 1 and %d.", MaxListLimit))
	case f.Offset < 0:
		return nil, 0, ParamValueInvalid("offset", "must be 0 or more.")
	case f.Status != "" && !f.Status.Valid():
		return nil, 0, ParamValueInvalid("status", "must be one of pending, accepted, revoked.")
	case len(f.UserID) > MaxIDParamBytes:
		return nil, 0, ParamValueInvalid("user_id", fmt.Sprintf("must be at most %d bytes.", MaxIDParamBytes))
	}
	if f.Kind == "" {
		f.Kind = KindSignIn
	}
	return s.store.List(ctx, f)
}

// validKey checks an Idempotency-Key header's value; "" is no key.
func validKey(key string) error {
	if len(key) > MaxIdempotencyKey {
		return ParamValueInvalid("Idempotency-Key", fmt.Sprintf("must be at most %d bytes.", MaxIdempotencyKey))
	}
	return nil
}

// idempotency is the key record for a change at now, or nil without a key.
// request identifies the request; op keeps one key's uses on different
// verbs apart, so that reusing a key across verbs is a mismatch.
func idempotency(key, op string, request []byte, now time.Time) *Idempotency {
	if key == "" {
		return nil
	}
	h := sha256.New()
	h.Write([]byte(op + "\x00"))
	h.Write(request)
	return &Idempotency{Key: key, RequestHash: h.Sum(nil), NotBefore: now.Add(-IdempotencyWindow)}
}

// Revoke moves a pending token to revoked. An expired pending token may be
// revoked. With an idempotency key, a retry of a revoke that succeeded
// answers the token as that revoke left it.
func (s *Service) Revoke(ctx context.Context, kind Kind, id, idempotencyKey string) (Token, error) {
	if err := validKey(idempotencyKey); err != nil {
		return Token{}, err
	}
	if !ValidID(id) || KindOf(id) != kind {
		return Token{}, ErrNotFound
	}
	now := s.now()
	tok, change, err := s.store.Revoke(ctx, id, now, idempotency(idempotencyKey, "revoke", []byte(id), now))
	switch {
	case err != nil:
		return Token{}, err
	case change == Unchanged:
		errs := errorsOf[kind]
		e := *errs.cannotRevoke
		e.LongMessage = fmt.Sprintf("%s cannot be revoked because its status is %s. Only pending tokens can be revoked.", errs.name, tok.Status)
		return tok, &e
	case change == Changed:
		s.observer.Revoked(tok)
	}
	return tok, nil
}

// RedeemParams are the inputs of Redeem: a ticket, or a user's one-time
// code.
type RedeemParams struct {
	Ticket string
	UserID string // with Code, instead of Ticket
	Code   string
	// IdempotencyKey, optional: a retry with the same key and request after
	// a lost answer gets the answer of the redemption that succeeded.
	IdempotencyKey string
}

// Redeem accepts a ticket, or a user's code, once: the first call for a
// valid, pending, unexpired token moves it to accepted; every other call
// fails, except a retry under the idempotency key of the call that
// succeeded.
func (s *Service) Redeem(ctx context.Context, p RedeemParams) (Token, error) {
	var tok Token
	var change Change
	var err error
	if p.Ticket == "" && (p.Code != "" || p.UserID != "") {
		tok, change, err = s.redeemCode(ctx, p)
	} else {
		tok, change, err = s.redeem(ctx, p)
	}
	switch {
	case err != nil:
		s.observer.RedeemFailed(err)
		return Token{}, err
	case change == Changed:
		s.observer.Redeemed(tok)
	}
	return tok, nil
}

func (s *Service) redeem(ctx context.Context, p RedeemParams) (Token, Change, error) {
	if p.Ticket == "" {
		return Token{}, Unchanged, ParamMissing("ticket")
	}
	if err := validKey(p.IdempotencyKey); err != nil {
		return Token{}, Unchanged, err
	}
	claims, err := s.verifyTicket(ctx, p.Ticket)
	if err != nil {
		return Token{}, Unchanged, err
	}
	hash := HashTicket(p.Ticket)
	now := s.now()
	tok, change, err := s.store.Redeem(ctx, claims.ID, hash, now, idempotency(p.IdempotencyKey, "redeem", hash, now))
	switch {
	case errors.Is(err, ErrNotFound):
		return Token{}, Unchanged, errorsOf[KindOf(claims.ID)].cannotBeUsed
	case err != nil:
		return Token{}, Unchanged, err
	case change != Unchanged:
		return tok, change, nil
	}
	// Nothing matched: the stored row tells why.
	if err := refusal(tok, hash, now); err != nil {
		s.recordRefusal(ctx, tok, err, now)
		return Token{}, Unchanged, err
	}
	return Token{}, Unchanged, fmt.Errorf("redeem of %s matched nothing, yet it is redeemable", tok.ID)
}

// redeemCode redeems the pending coded token of p.UserID whose code is
// p.Code. Each wrong code counts against every pending coded token of the
// user; a token with s.maxAttempts wrong codes is no longer redeemable by
// code.
func (s *Service) redeemCode(ctx context.Context, p RedeemParams) (Token, Change, error) {
	switch {
	case p.UserID == "":
		return Token{}, Unchanged, ParamMissing("user_id")
	case len(p.UserID) > MaxIDParamBytes:
		return Token{}, Unchanged, ParamValueInvalid("user_id", fmt.Sprintf("must be at most %d bytes.", MaxIDParamBytes))
	case p.Code == "":
		return Token{}, Unchanged, ParamMissing("code")
	}
	if err := validKey(p.IdempotencyKey); err != nil {
		return Token{}, Unchanged, err
	}
	if s.codes == nil || !validCode(p.Code) {
		// Not counted: no code of ours has this shape.
		return Token{}, Unchanged, ErrCodeIncorrect
	}
	now := s.now()
	request := []byte(fmt.Sprintf("%d:%s|%s", len(p.UserID), p.UserID, p.Code))
	tok, outcome, err := s.store.RedeemCode(ctx, CodeRedemption{
		UserID: p.UserID, Now: now, MaxAttempts: s.maxAttempts,
		Matches: func(tokenID string, stored StoredCode) bool { return s.codes.Matches(tokenID, p.Code, stored) },
		Key:     idempotency(p.IdempotencyKey, "redeem code", request, now),
	})
	switch {
	case err != nil:
		return Token{}, Unchanged, err
	case outcome == CodeAccepted:
		return tok, Changed, nil
	case outcome == CodeReplayed:
		return tok, Replayed, nil
	case outcome == CodeFinished:
		if err := refusal(tok, tok.TicketHash, now); err != nil {
			s.recordRefusal(ctx, tok, err, now)
			return Token{}, Unchanged, err
		}
		return Token{}, Unchanged, fmt.Errorf("code of %s refused, yet the token is redeemable", tok.ID)
	case outcome == CodeWrong:
		s.observer.CodeFailed()
		return Token{}, Unchanged, ErrCodeIncorrect
	}
	return Token{}, Unchanged, ErrVerificationFailed
}

// RevokeUser revokes every pending token of a user, expired ones included,
// and returns them.
func (s *Service) RevokeUser(ctx context.Context, userID string) ([]Token, error) {
	if len(userID) > MaxIDParamBytes || !utf8.ValidString(userID) {
		return nil, ParamValueInvalid("user_id", fmt.Sprintf("must be valid UTF-8 of at most %d bytes.", MaxIDParamBytes))
	}
	revoked, err := s.store.RevokeUser(ctx, KindSignIn, userID, s.now())
	if err != nil {
		return nil, err
	}
	for _, t := range revoked {
		s.observer.Revoked(t)
	}
	return revoked, nil
}

// refusal is why a redemption of the ticket hashing to hash, at now, is
// refused by the stored token tok, in the contract's order; nil when it
// would be accepted. Redeem asks it after its conditional change matched
// nothing, Verify before changing nothing, so the two always agree.
func refusal(tok Token, hash []byte, now time.Time) error {
	switch {
	case subtle.ConstantTimeCompare(tok.TicketHash, hash) != 1:
		return ErrTicketInvalid
	case tok.Status == StatusPending && tok.Expired(now):
		return ErrTicketExpired
	case tok.Status == StatusAccepted:
		return errorsOf[tok.Kind()].alreadyUsed
	case tok.Status == StatusRevoked:
		return errorsOf[tok.Kind()].revoked
	case tok.Status != StatusPending:
		return fmt.Errorf("token %s has unknown status %q", tok.ID, tok.Status)
	}
	return nil
}

// Verify answers what a redemption of ticket would answer now, and changes
// nothing: the stored token, pending, when a redeem would accept it, and
// otherwise the very error a redeem would give. Pages that show "Continue
// as ..." before the person goes on use it, and mail scanners that fetch
// such a page burn nothing.
func (s *Service) Verify(ctx context.Context, ticket string) (Token, error) {
	tok, err := s.verify(ctx, ticket)
	s.observer.Verified(err)
	return tok, err
}

func (s *Service) verify(ctx context.Context, ticket string) (Token, error) {
	if ticket == "" {
		return Token{}, ParamMissing("ticket")
	}
	claims, err := s.verifyTicket(ctx, ticket)
	if err != nil {
		return Token{}, err
	}
	tok, err := s.store.Get(ctx, claims.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return Token{}, errorsOf[KindOf(claims.ID)].cannotBeUsed
	case err != nil:
		return Token{}, err
	}
	if err := refusal(tok, HashTicket(ticket), s.now()); err != nil {
		return Token{}, err
	}
	return tok, nil
}

// Ready reports whether the store can be reached.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }

// Tickets returns the ticketer, whose keys the JWKS endpoint publishes.
func (s *Service) Tickets() *Ticketer { return s.tickets }

// sign signs tok's ticket, in a ticket.sign span when tracing.
func (s *Service) sign(ctx context.Context, tok Token) (string, error) {
	if s.tracer == nil {
		return s.tickets.Sign(tok)
	}
	_, span := s.tracer.Start(ctx, "ticket.sign", trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()
	ticket, err := s.tickets.Sign(tok)
	if err != nil {
		span.SetStatus(codes.Error, "signing failed")
	}
	return ticket, err
}

// verifyTicket checks a ticket's signature and claims, in a ticket.verify
// span when tracing. A refused ticket is the caller's error, not the
// span's: its domain code goes in an attribute, never the ticket.
func (s *Service) verifyTicket(ctx context.Context, ticket string) (*TicketClaims, error) {
	if s.tracer == nil {
		return s.tickets.Verify(ticket)
	}
	_, span := s.tracer.Start(ctx, "ticket.verify", trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()
	claims, err := s.tickets.Verify(ticket)
	if err != nil && span.IsRecording() {
		code := "internal"
		var e *Error
		if errors.As(err, &e) {
			code = e.Code
		}
		span.SetAttributes(attribute.String("signin_tokens.ticket.refused", code))
	}
	return claims, err
}
