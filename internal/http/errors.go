package http

import (
	"context"
	"errors"
	"net/http"

	"github.com/signin-tokens/signin-tokens/internal/tokens"
)

// Error codes raised by the HTTP layer alone (authentication, request
// decoding, routing, rate limits); the domain's codes are in internal/tokens.
const (
	CodeAuthKeyInvalid    = "clerk_key_invalid"
	CodeAuthHeaderInvalid = "authorization_header_format_invalid"
	CodeParamTypeInvalid  = "form_param_type_invalid"
	CodeBodyInvalid       = "request_body_invalid"
	CodeBodyTooLarge      = "request_body_too_large"
	CodeMethodNotAllowed  = "request_method_not_allowed"
	CodeTooManyRequests   = "too_many_requests"
)

// statusByCode maps every error code to its HTTP status. A code missing here
// is a bug; it is answered with 500.
var statusByCode = map[string]int{
	CodeAuthKeyInvalid:             http.StatusUnauthorized,
	CodeAuthHeaderInvalid:          http.StatusUnauthorized,
	tokens.CodeParamMissing:        http.StatusUnprocessableEntity,
	tokens.CodeParamValueInvalid:   http.StatusUnprocessableEntity,
	CodeParamTypeInvalid:           http.StatusUnprocessableEntity,
	CodeBodyInvalid:                http.StatusBadRequest,
	CodeBodyTooLarge:               http.StatusRequestEntityTooLarge,
	tokens.CodeNotFound:            http.StatusNotFound,
	CodeMethodNotAllowed:           http.StatusMethodNotAllowed,
	tokens.CodeCannotRevoke:        http.StatusBadRequest,
	tokens.CodeTicketInvalid:       http.StatusBadRequest,
	tokens.CodeTicketExpired:       http.StatusBadRequest,
	tokens.CodeAlreadyUsed:         http.StatusBadRequest,
	tokens.CodeRevoked:             http.StatusBadRequest,
	tokens.CodeCannotBeUsed:        http.StatusBadRequest,
	tokens.CodeIdempotencyMismatch: http.StatusUnprocessableEntity,
	tokens.CodeCodeIncorrect:       http.StatusUnprocessableEntity,
	tokens.CodeActorCannotRevoke:   http.StatusBadRequest,
	tokens.CodeActorAlreadyUsed:    http.StatusBadRequest,
	tokens.CodeActorRevoked:        http.StatusBadRequest,
	tokens.CodeActorCannotBeUsed:   http.StatusBadRequest,
	tokens.CodeVerificationFailed:  http.StatusBadRequest,
	CodeTooManyRequests:            http.StatusTooManyRequests,
	tokens.CodeUserLookupFailed:    http.StatusBadGateway,
	tokens.CodeUnavailable:         http.StatusServiceUnavailable,
	tokens.CodeInternal:            http.StatusInternalServerError,
}

// statusClientClosed is recorded, as nginx does, for requests whose client
// went away before the answer.
const statusClientClosed = 499

// Errors raised by the HTTP layer itself.
var (
	errKeyInvalid = &tokens.Error{Code: CodeAuthKeyInvalid, Message: "invalid key",
		LongMessage: "The secret key provided is invalid. Send it as Authorization: Bearer <secret key>."}
	errHeaderInvalid = &tokens.Error{Code: CodeAuthHeaderInvalid, Message: "invalid authorization header",
		LongMessage: "The Authorization header must have the form: Bearer <secret key>."}
	errBodyInvalid = &tokens.Error{Code: CodeBodyInvalid, Message: "request body invalid",
		LongMessage: "The request body is not a valid JSON object or form-encoded body."}
	errBodyTooLarge = &tokens.Error{Code: CodeBodyTooLarge, Message: "request body too large",
		LongMessage: "The request body exceeds the size limit."}
	errRouteNotFound = &tokens.Error{Code: tokens.CodeNotFound, Message: "not found",
		LongMessage: "The requested resource was not found."}
	errMethodNotAllowed = &tokens.Error{Code: CodeMethodNotAllowed, Message: "method not allowed",
		LongMessage: "The request method is not allowed for this resource."}
	errTooManyRequests = &tokens.Error{Code: CodeTooManyRequests, Message: "too many requests",
		LongMessage: "Too many requests. Retry after the time the Retry-After header gives."}
	errInternal = &tokens.Error{Code: tokens.CodeInternal, Message: "internal error",
		LongMessage: "Something went wrong on our side. The trace id identifies this request in our logs."}
)

// paramTypeInvalid is the error for a parameter of the wrong JSON type; only
// the request decoder can tell types apart.
func paramTypeInvalid(name, want string) *tokens.Error {
	return &tokens.Error{Code: CodeParamTypeInvalid, Param: name, Message: "is of the wrong type",
		LongMessage: name + " must be " + want + "."}
}

type errorItem struct {
	Message     string            `json:"message"`
	LongMessage string            `json:"long_message"`
	Code        string            `json:"code"`
	Meta        map[string]string `json:"meta"`
}

type errorBody struct {
	Errors  []errorItem `json:"errors"`
	TraceID string      `json:"clerk_trace_id"`
}

// writeError is the one place an error becomes an HTTP response. Errors that
// are not *tokens.Error are logged and shown as a generic 500.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *tokens.Error
	if errors.Is(err, context.Canceled) && errors.Is(r.Context().Err(), context.Canceled) {
		// The client went away (or shutdown cut the request): nobody reads an
		// answer, and it is not our failure, so it is recorded as 499.
		requestLog(r.Context()).Debug().Err(err).Msg("request canceled")
		w.WriteHeader(statusClientClosed)
		return
	}
	if !errors.As(err, &e) {
		requestLog(r.Context()).Error().Err(err).Msg("internal error")
		e = errInternal
	} else if e.Code == tokens.CodeUnavailable {
		unavailable(r.Context(), err, e.Code)
	} else if e.Code == tokens.CodeUserLookupFailed {
		requestLog(r.Context()).Warn().Err(err).Msg(e.Code)
	}
	status, ok := statusByCode[e.Code]
	if !ok {
		requestLog(r.Context()).Error().Str("code", e.Code).Msg("error code without a status")
		status = http.StatusInternalServerError
	}
	meta := map[string]string{}
	if e.Param != "" {
		meta["param_name"] = e.Param
	}
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{
		Errors:  []errorItem{{Message: e.Message, LongMessage: e.LongMessage, Code: e.Code, Meta: meta}},
		TraceID: traceID(r.Context()),
	})
}
