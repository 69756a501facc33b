package tokens

import (
	"errors"
	"fmt"
)

// Error codes the domain's verbs return: with the codes the HTTP layer raises
// itself (internal/http), the fixed vocabulary callers see in the "code"
// field of an error body. The HTTP layer maps each one to a status in one
// table.
const (
	CodeParamMissing        = "form_param_missing"
	CodeParamValueInvalid   = "form_param_value_invalid"
	CodeNotFound            = "resource_not_found"
	CodeCannotRevoke        = "sign_in_token_cannot_be_revoked_code"
	CodeTicketInvalid       = "ticket_invalid_code"
	CodeTicketExpired       = "ticket_expired_code"
	CodeAlreadyUsed         = "sign_in_token_already_used_code"
	CodeRevoked             = "sign_in_token_revoked_code"
	CodeCannotBeUsed        = "sign_in_token_cannot_be_used_code"
	CodeIdempotencyMismatch = "idempotency_key_reused"
	CodeCodeIncorrect       = "form_code_incorrect"
	CodeActorCannotRevoke   = "actor_token_cannot_be_revoked_code"
	CodeActorAlreadyUsed    = "actor_token_already_used_code"
	CodeActorRevoked        = "actor_token_revoked_code"
	CodeActorCannotBeUsed   = "actor_token_cannot_be_used_code"
	CodeVerificationFailed  = "verification_failed"
	CodeUserLookupFailed    = "user_lookup_failed"
	CodeUnavailable         = "service_unavailable"
	CodeInternal            = "internal_clerk_error"
)

// Error is the one application error type: a stable machine code, a short
// and a long human message, and, for parameter errors, the parameter's name.
// Any error that is not an *Error is internal and shown as a generic 500.
type Error struct {
	Code        string
	Message     string
	LongMessage string
	Param       string // set for form_param_* codes
}

func (e *Error) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.LongMessage, e.Param)
	}
	return e.Code + ": " + e.LongMessage
}

// Is lets errors.Is match any *Error with the same code, so sentinels such as
// ErrNotFound match errors built with extra detail.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Param == "" || t.Param == e.Param)
}

// ErrorCode returns the code of err if it is an *Error, or CodeInternal.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Sentinel errors for the service's verbs.
var (
	ErrNotFound = &Error{Code: CodeNotFound, Message: "not found",
		LongMessage: "Resource not found."}
	ErrCannotRevoke = &Error{Code: CodeCannotRevoke, Message: "cannot revoke",
		LongMessage: "Sign in token cannot be revoked. Only pending tokens can be revoked."}
	ErrTicketInvalid = &Error{Code: CodeTicketInvalid, Message: "invalid ticket",
		LongMessage: "The ticket is invalid."}
	ErrTicketExpired = &Error{Code: CodeTicketExpired, Message: "ticket expired",
		LongMessage: "The ticket has expired."}
	ErrAlreadyUsed = &Error{Code: CodeAlreadyUsed, Message: "already used",
		LongMessage: "This sign in token has already been used. Each token can only be used once."}
	ErrRevoked = &Error{Code: CodeRevoked, Message: "revoked",
		LongMessage: "This sign in token has been revoked and cannot be used anymore."}
	ErrCannotBeUsed = &Error{Code: CodeCannotBeUsed, Message: "cannot be used",
		LongMessage: "This sign in token cannot be used."}
	ErrUnavailable = &Error{Code: CodeUnavailable, Message: "service unavailable",
		LongMessage: "The database is unreachable. Try again later."}
	ErrUserNotFound = &Error{Code: CodeNotFound, Message: "not found",
		LongMessage: "No user was found with the given user_id."}
	ErrUserLookupFailed = &Error{Code: CodeUserLookupFailed, Message: "user lookup failed",
		LongMessage: "The user directory could not be asked whether the user exists. Try again later."}
	ErrActorCannotRevoke = &Error{Code: CodeActorCannotRevoke, Message: "cannot revoke",
		LongMessage: "Actor token cannot be revoked. Only pending tokens can be revoked."}
	ErrActorAlreadyUsed = &Error{Code: CodeActorAlreadyUsed, Message: "already used",
		LongMessage: "This actor token has already been used. Each token can only be used once."}
	ErrActorRevoked = &Error{Code: CodeActorRevoked, Message: "revoked",
		LongMessage: "This actor token has been revoked and cannot be used anymore."}
	ErrActorCannotBeUsed = &Error{Code: CodeActorCannotBeUsed, Message: "cannot be used",
		LongMessage: "This actor token cannot be used."}
	ErrCodeIncorrect = &Error{Code: CodeCodeIncorrect, Param: "code", Message: "is incorrect",
		LongMessage: "Incorrect code."}
	ErrVerificationFailed = &Error{Code: CodeVerificationFailed, Message: "failed",
		LongMessage: "Too many failed attempts, or no pending code for this user. Ask for a new sign-in code."}
	ErrIdempotencyMismatch = &Error{Code: CodeIdempotencyMismatch, Message: "idempotency key reused",
		LongMessage: "This Idempotency-Key was already used with a different request body."}
)

// ParamMissing is the error for a required parameter that is absent or empty.
func ParamMissing(name string) *Error {
	return &Error{Code: CodeParamMissing, Param: name, Message: "missing required parameter",
		LongMessage: name + " must be included."}
}

// ParamValueInvalid is the error for a parameter whose value is out of range
// or not one of the accepted values.
func ParamValueInvalid(name, why string) *Error {
	return &Error{Code: CodeParamValueInvalid, Param: name, Message: "is invalid",
		LongMessage: name + " is invalid: " + why}
}

// kindErrors are the errors whose code names the token's kind.
type kindErrors struct {
	cannotRevoke, alreadyUsed, revoked, cannotBeUsed *Error
	name                                             string // in messages
}

var errorsOf = map[Kind]kindErrors{
	KindSignIn: {ErrCannotRevoke, ErrAlreadyUsed, ErrRevoked, ErrCannotBeUsed, "Sign in token"},
	KindActor:  {ErrActorCannotRevoke, ErrActorAlreadyUsed, ErrActorRevoked, ErrActorCannotBeUsed, "Actor token"},
}
