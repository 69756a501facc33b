package postgres_test

import (
	"context"
	"fmt"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/signin-tokens/signin-tokens/internal/store/postgres"
	"github.com/signin-tokens/signin-tokens/internal/store/postgres/pgtest"
	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// TestGroupSpan: a group of writes is one span, started by the writer, with
// a link to each write's span and the group's size; the writes' own traces
// are untouched.
func TestGroupSpan(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	s := openWith(t, pgtest.URL(t), postgres.Options{Writers: 1, TracerProvider: tp})
	tracer := tp.Tracer("test")

	const n = 6
	var callers []string // the span ids of the writes' callers
	var fns []func()
	for i := range n {
		ctx, span := tracer.Start(context.Background(), fmt.Sprintf("caller %d", i))
		callers = append(callers, span.SpanContext().SpanID().String())
		tok := pending(fmt.Sprintf("sit_traced_%d", i))
		fns = append(fns, func() {
			defer span.End()
			if err := createPlain(ctx, s, tok); err != nil {
				t.Errorf("create %d: %v", i, err)
			}
		})
	}
	queued(t, s, holder(t, s), fns...)

	var groups []sdktrace.ReadOnlySpan
	for _, sp := range spans.Ended() {
		if sp.Name() == "BATCH create sign_in_tokens" {
			groups = append(groups, sp)
		}
	}
	// The holder's own create went alone, as a span of one; the n queued
	// ones went together.
	var group sdktrace.ReadOnlySpan
	for _, g := range groups {
		if len(g.Links()) == n {
			group = g
		}
	}
	if group == nil {
		t.Fatalf("no group span linking all %d writes among %d group spans", n, len(groups))
	}
	linked := map[string]bool{}
	for _, l := range group.Links() {
		linked[l.SpanContext.SpanID().String()] = true
	}
	for i, id := range callers {
		if !linked[id] {
			t.Errorf("caller %d's span is not linked from the group span", i)
		}
	}
	attrs := map[string]string{}
	for _, kv := range group.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["db.system.name"] != "postgresql" || attrs["db.collection.name"] != "sign_in_tokens" || attrs["db.operation.batch.size"] != fmt.Sprint(n) {
		t.Errorf("group span attributes: %v", attrs)
	}
	for _, kv := range group.Attributes() {
		for _, tok := range []string{"sit_traced_0", string(tokens.HashTicket("ticket sit_traced_0"))} {
			if kv.Value.Emit() == tok {
				t.Errorf("group span attribute %s carries a token's id or hash", kv.Key)
			}
		}
	}
}
