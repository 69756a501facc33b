package store

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TracerName is the instrumentation scope of the store's spans.
const TracerName = "github.com/signin-tokens/signin-tokens/internal/store"

// Collection is db.collection.name of the store's token spans: the table
// all tokens live in.
const Collection = "sign_in_tokens"

// EventCollection is db.collection.name of the audit trail's spans.
const EventCollection = "events"

// Traced is a tokens.Store that records a client span around each of the
// service's operations on st, after the database semantic conventions:
// db.system.name, db.operation.name (the store's verb: create, get, list,
// redeem, revoke, redeem_code, revoke_user; append and list on events) and
// db.collection.name. No
// argument of a statement ever goes in: ids, tickets' hashes, codes and
// idempotency keys stay out. The retention sweep is not traced.
type Traced struct {
	tokens.Store
	tracer trace.Tracer
	system attribute.KeyValue
}

var _ tokens.Store = (*Traced)(nil)

// NewTraced wraps st, a store of kind, with spans from tp.
func NewTraced(st tokens.Store, kind Kind, tp trace.TracerProvider) *Traced {
	system := semconv.DBSystemNameSQLite
	if kind == Postgres {
		system = semconv.DBSystemNamePostgreSQL
	}
	return &Traced{Store: st, tracer: tp.Tracer(TracerName), system: system}
}

// start begins the span of one operation.
func (t *Traced) start(ctx context.Context, op string) (context.Context, trace.Span) {
	return t.startOn(ctx, op, Collection)
}

// startOn begins the span of one operation on collection.
func (t *Traced) startOn(ctx context.Context, op, collection string) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, op+" "+collection, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(t.system, semconv.DBOperationName(op), semconv.DBCollectionName(collection))
	}
	return ctx, span
}

// end ends span with err's class. A domain answer (not found, already used)
// is the operation working; only a failure of the database is an error, and
// its message stays out, since a driver's message may quote a value.
func end(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		var e *tokens.Error
		switch {
		case errors.Is(err, tokens.ErrUnavailable):
			span.SetAttributes(semconv.ErrorTypeKey.String(tokens.CodeUnavailable))
			span.SetStatus(codes.Error, tokens.CodeUnavailable)
		case !errors.As(err, &e):
			span.SetAttributes(semconv.ErrorTypeOther)
			span.SetStatus(codes.Error, "internal")
		}
	}
	span.End()
}

// Create is the store's Create in a "create sign_in_tokens" span.
func (t *Traced) Create(ctx context.Context, c tokens.Creation) (tokens.CreateResult, error) {
	ctx, span := t.start(ctx, "create")
	res, err := t.Store.Create(ctx, c)
	end(span, err)
	return res, err
}

// Get is the store's Get in a "get sign_in_tokens" span.
func (t *Traced) Get(ctx context.Context, id string) (tokens.Token, error) {
	ctx, span := t.start(ctx, "get")
	tok, err := t.Store.Get(ctx, id)
	end(span, err)
	return tok, err
}

// List is the store's List in a "list sign_in_tokens" span.
func (t *Traced) List(ctx context.Context, f tokens.ListFilter) ([]tokens.Token, int, error) {
	ctx, span := t.start(ctx, "list")
	page, total, err := t.Store.List(ctx, f)
	end(span, err)
	return page, total, err
}

// Revoke is the store's Revoke in a "revoke sign_in_tokens" span.
func (t *Traced) Revoke(ctx context.Context, id string, now time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	ctx, span := t.start(ctx, "revoke")
	tok, change, err := t.Store.Revoke(ctx, id, now, key)
	end(span, err)
	return tok, change, err
}

// RevokeUser is the store's RevokeUser in a "revoke_user sign_in_tokens" span.
func (t *Traced) RevokeUser(ctx context.Context, kind tokens.Kind, userID string, now time.Time) ([]tokens.Token, error) {
	ctx, span := t.start(ctx, "revoke_user")
	revoked, err := t.Store.RevokeUser(ctx, kind, userID, now)
	end(span, err)
	return revoked, err
}

// Redeem is the store's Redeem in a "redeem sign_in_tokens" span.
func (t *Traced) Redeem(ctx context.Context, id string, hash []byte, now time.Time, key *tokens.Idempotency) (tokens.Token, tokens.Change, error) {
	ctx, span := t.start(ctx, "redeem")
	tok, change, err := t.Store.Redeem(ctx, id, hash, now, key)
	end(span, err)
	return tok, change, err
}

// RedeemCode is the store's RedeemCode in a "redeem_code sign_in_tokens" span.
func (t *Traced) RedeemCode(ctx context.Context, r tokens.CodeRedemption) (tokens.Token, tokens.CodeOutcome, error) {
	ctx, span := t.start(ctx, "redeem_code")
	tok, outcome, err := t.Store.RedeemCode(ctx, r)
	end(span, err)
	return tok, outcome, err
}

// AppendEvent is the store's AppendEvent in an "append events" span.
func (t *Traced) AppendEvent(ctx context.Context, e tokens.Event) error {
	ctx, span := t.startOn(ctx, "append", EventCollection)
	err := t.Store.AppendEvent(ctx, e)
	end(span, err)
	return err
}

// ListEvents is the store's ListEvents in a "list events" span.
func (t *Traced) ListEvents(ctx context.Context, f tokens.EventFilter) ([]tokens.Event, bool, error) {
	ctx, span := t.startOn(ctx, "list", EventCollection)
	events, more, err := t.Store.ListEvents(ctx, f)
	end(span, err)
	return events, more, err
}
