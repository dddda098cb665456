package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Op is the kind of change a Request asks for. Every change of a seat goes
// through the queue and is decided by the worker.
type Op string

const (
	OpAssign Op = "assign"
	OpResend Op = "resend"
	OpRevoke Op = "revoke"
	OpClaim  Op = "claim"
)

// Request is one message on the requests stream. Its ID is the request id:
// the Nats-Msg-Id it is published with and the primary key of its row in
// the request ledger, so a duplicate publish and a redelivery are both
// recognised. Requests carry no secret: a claim carries the SHA-256 of the
// invitation token, never the token.
type Request struct {
	ID         string `json:"id"`
	Op         Op     `json:"op"`
	CustomerID string `json:"customer_id,omitempty"` // the authenticated customer (portal sessions)
	MemberID   string `json:"member_id,omitempty"`   // set for member sessions
	// OrganizationID is set instead of CustomerID for an organization's
	// caller (an organization access token): it may act on any seat pool
	// of its organization, and on nothing else.
	OrganizationID string      `json:"organization_id,omitempty"`
	Assign         *SeatAssign `json:"assign,omitempty"`
	SeatID         string      `json:"seat_id,omitempty"`    // resend, revoke
	TokenHash      string      `json:"token_hash,omitempty"` // claim: hex SHA-256 of the invitation token
	BatchID        string      `json:"batch_id,omitempty"`
	BatchIndex     int         `json:"batch_index,omitempty"`
	// ReplyTo is a core NATS subject where the ingress that accepted the
	// request waits for its Result; empty when nobody waits.
	ReplyTo     string    `json:"reply_to,omitempty"`
	SubmittedAt time.Time `json:"submitted_at"`
	// Trace is the W3C trace context of the worker applying the request,
	// set by the worker from the message's headers so that the mail
	// request it writes continues the same trace. Never serialised.
	Trace map[string]string `json:"-"`
}

// LockKey names the row a request locks first (its pool, or its seat), so
// a worker can order a batch and take locks in one global order.
func (r Request) LockKey() string {
	if a := r.Assign; a != nil {
		return a.SubscriptionID + a.OrderID + a.CheckoutID
	}
	return r.SeatID + r.TokenHash
}

// ErrMalformed marks a message that can never be applied.
var ErrMalformed = errors.New("malformed request")

// DecodeRequest parses and checks a Request from a queue message. A request
// it accepts is safe to apply: ids are UUIDs and an assign body passes the
// same validation as the HTTP API.
func DecodeRequest(data []byte) (Request, error) {
	var r Request
	if err := json.Unmarshal(data, &r); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := r.Check(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// Check reports whether r is well formed.
func (r Request) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if !IsUUID(r.ID) {
		return bad("id %q is not a UUID", r.ID)
	}
	if r.CustomerID != "" && !IsUUID(r.CustomerID) {
		return bad("customer_id is not a UUID")
	}
	if r.MemberID != "" && !IsUUID(r.MemberID) {
		return bad("member_id is not a UUID")
	}
	if r.OrganizationID != "" && !IsUUID(r.OrganizationID) {
		return bad("organization_id is not a UUID")
	}
	// A request acts for one caller: a customer (and perhaps one of its
	// members), or an organization.
	if r.OrganizationID != "" && (r.CustomerID != "" || r.MemberID != "") {
		return bad("organization_id goes without customer_id and member_id")
	}
	caller := r.CustomerID != "" || r.OrganizationID != ""
	if r.BatchID != "" && !IsUUID(r.BatchID) {
		return bad("batch_id is not a UUID")
	}
	if r.BatchIndex < 0 {
		return bad("negative batch_index")
	}
	switch r.Op {
	case OpAssign:
		if !caller || r.Assign == nil {
			return bad("assign needs customer_id or organization_id, and assign")
		}
		if errs := r.Assign.Validate(); len(errs) > 0 {
			return bad("%s", (&ValidationError{Detail: errs}).Error())
		}
		// The organization API's SeatAssign has no checkout_id (Polar's
		// SeatAssign, not the portal's CustomerSeatAssign).
		if r.OrganizationID != "" && r.Assign.CheckoutID != "" {
			return bad("an organization's assign names a subscription or an order, not a checkout")
		}
	case OpResend, OpRevoke:
		if !caller || !IsUUID(r.SeatID) {
			return bad("%s needs customer_id or organization_id, and seat_id", r.Op)
		}
	case OpClaim:
		if len(r.TokenHash) != 64 {
			return bad("claim needs a token_hash")
		}
		if r.OrganizationID != "" {
			return bad("a claim has no organization caller")
		}
	default:
		return bad("unknown op %q", r.Op)
	}
	return nil
}

// ParseUUID is the one definition of an id seatd accepts, from the API,
// the CLI or an import file: the 36-character hyphenated form, in any case.
// It returns the id in canonical (lowercase) form.
func ParseUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// IsUUID reports whether s is an id in canonical form, as ids travel
// inside seatd (messages, the ledger, import request ids).
func IsUUID(s string) bool {
	c, ok := ParseUUID(s)
	return ok && c == s
}

// Result is the worker's answer to a Request. It is stored in the request
// ledger and sent to the waiting ingress, which turns it into an HTTP
// response with Code.HTTPStatus().
type Result struct {
	RequestID string        `json:"request_id"`
	Code      Code          `json:"code"`
	Detail    string        `json:"detail,omitempty"`
	Seat      *CustomerSeat `json:"seat,omitempty"`
	// SessionID is the customer or member session created by a claim; the
	// ingress derives the session token from it (see secret.Keys).
	SessionID string `json:"session_id,omitempty"`
}

// OK reports whether the request succeeded.
func (r Result) OK() bool { return r.Code == CodeOK }

// Code names an outcome; the HTTP layer maps it to a status and Polar's
// error name in one place (ingress/status.go). Codes are stored in the
// request ledger, so a value, once used, is never renamed.
type Code string

const (
	CodeOK           Code = "ok"
	CodeInvalid      Code = "invalid_request"
	CodeBadRequest   Code = "bad_request"
	CodeUnauthorized Code = "unauthorized"
	CodeForbidden    Code = "forbidden"
	// CodeInsufficientScope: a valid token without the scope an endpoint
	// needs (RFC 6750's name, which Polar answers).
	CodeInsufficientScope   Code = "insufficient_scope"
	CodeSeatPricingDisabled Code = "seat_pricing_disabled"
	CodeNotFound            Code = "not_found"
	CodeOrderNotPaid        Code = "order_not_paid"
	CodeNoAvailableSeats    Code = "no_available_seats"
	CodeAlreadyAssigned     Code = "already_assigned"
	CodeNotPending          Code = "seat_not_pending"
	CodeInvalidToken        Code = "invalid_invitation_token"
	CodeConflict            Code = "conflict"
	CodeTooLarge            Code = "request_too_large"
	CodeTimeout             Code = "request_timeout"
	CodeRateLimited         Code = "rate_limited"
	CodeDeadLettered        Code = "dead_lettered"
	CodeUnavailable         Code = "unavailable"
	CodeInternal            Code = "internal_error"

	CodeCustomerNotFound      Code = "customer_not_found"      // a customer_id or external_customer_id of no customer
	CodeMemberNotFound        Code = "member_not_found"        // a member_id or external_member_id of no member
	CodeMemberEmailMismatch   Code = "member_email_mismatch"   // external_member_id names a member with another email
	CodeInvalidSeatAssignment Code = "invalid_seat_assignment" // a recipient the pool's organization cannot take
	CodeMethodNotAllowed      Code = "method_not_allowed"
)

// Codes lists every Code, so whatever maps outcomes (the HTTP answers
// table) can be checked for completeness; TestCodesListsEveryCode keeps it
// in step with the declarations.
var Codes = []Code{
	CodeOK, CodeInvalid, CodeBadRequest, CodeUnauthorized, CodeForbidden, CodeInsufficientScope,
	CodeSeatPricingDisabled, CodeNotFound, CodeOrderNotPaid, CodeNoAvailableSeats, CodeAlreadyAssigned,
	CodeNotPending, CodeInvalidToken, CodeConflict, CodeTooLarge, CodeTimeout, CodeRateLimited,
	CodeDeadLettered, CodeUnavailable, CodeInternal, CodeCustomerNotFound, CodeMemberNotFound,
	CodeMemberEmailMismatch, CodeInvalidSeatAssignment, CodeMethodNotAllowed,
}

// Error is an error that carries a Code, so any layer can return an outcome
// and the edge can map it without string matching.
type Error struct {
	Code   Code
	Detail string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Detail) }

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the Code carried by err, CodeOK for nil and
// CodeInternal for errors that carry none.
func ErrorCode(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// SeatEventType names a seat life-cycle event.
type SeatEventType string

const (
	SeatAssigned     SeatEventType = "customer_seat.assigned"
	SeatClaimedEvent SeatEventType = "customer_seat.claimed"
	SeatRevokedEvent SeatEventType = "customer_seat.revoked"
)

// SeatEvent is published once per change of a seat, in the order the
// changes were committed. Version counts the seat's changes from 1, so a
// consumer can detect a gap or a reordering.
type SeatEvent struct {
	ID        string        `json:"id"`
	Type      SeatEventType `json:"type"`
	Timestamp time.Time     `json:"timestamp"`
	Version   int           `json:"version"`
	Data      CustomerSeat  `json:"data"`
}

// MailRequest asks the mailer to deliver one invitation. It names the
// invitation only; the mailer reads everything else (and derives the
// token) itself, so no secret travels through the stream.
type MailRequest struct {
	InvitationID string `json:"invitation_id"`
	SeatID       string `json:"seat_id"`
	// RequestID is the request that asked for the invitation, and Trace
	// its W3C trace context, so the mailer's log lines and spans join the
	// request's. The mail request crosses the outbox, not a NATS hop, so
	// the context travels in the payload rather than in headers.
	RequestID string            `json:"request_id,omitempty"`
	Trace     map[string]string `json:"trace,omitempty"`
}
