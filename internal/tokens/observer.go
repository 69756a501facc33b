package tokens

// Observer is told of every change of state the service makes, so metrics
// can count them without the domain knowing how they are kept. Its methods
// run on the caller's goroutine and must return quickly.
type Observer interface {
	// Created is called for each new token; an idempotent replay, which
	// creates nothing, is not reported.
	Created(Token)
	// Revoked is called for each token moved from pending to revoked.
	Revoked(Token)
	// Redeemed is called for each ticket accepted.
	Redeemed(Token)
	// RedeemFailed is called for each redemption refused, with the error
	// returned to the caller (see ErrorCode for its code).
	RedeemFailed(err error)
	// CodeFailed is called for each wrong one-time code that was counted
	// against the user's coded tokens.
	CodeFailed()
	// Verified is called for each verification, with nil when a redeem
	// would have accepted the ticket, else the error returned.
	Verified(err error)
}

// nopObserver is the Observer used when none is configured.
type nopObserver struct{}

func (nopObserver) Created(Token)      {}
func (nopObserver) Revoked(Token)      {}
func (nopObserver) Redeemed(Token)     {}
func (nopObserver) RedeemFailed(error) {}
func (nopObserver) CodeFailed()        {}
func (nopObserver) Verified(error)     {}
