package ingress

import "github.com/seatd/seatd/events"

// answer is how an outcome reaches an HTTP client: the status and the
// error name in the body's "error" (Polar's exception class name, from
// server/polar/exceptions.py and customer_seat/service.py).
type answer struct {
	status int
	name   string
}

// answers is the one table that maps the worker's and the edge's outcomes
// to HTTP. Outcomes Polar has are answered with Polar's name; the ones
// only seatd has (its queue, limits and idempotency keys) get a name in
// Polar's style, marked "seatd" below and listed in the README.
var answers = map[events.Code]answer{
	events.CodeOK:                    {200, ""},
	events.CodeInvalid:               {422, "RequestValidationError"},
	events.CodeBadRequest:            {400, "BadRequest"},
	events.CodeUnauthorized:          {401, "Unauthorized"},
	events.CodeForbidden:             {403, "NotPermitted"},
	events.CodeInsufficientScope:     {403, "insufficient_scope"}, // authlib's error code, as Polar answers it
	events.CodeSeatPricingDisabled:   {403, "FeatureNotEnabled"},
	events.CodeNotFound:              {404, "ResourceNotFound"},
	events.CodeCustomerNotFound:      {404, "CustomerNotFound"},
	events.CodeMemberNotFound:        {404, "MemberNotFound"},
	events.CodeOrderNotPaid:          {400, "SeatNotAvailable"},
	events.CodeNoAvailableSeats:      {400, "SeatNotAvailable"},
	events.CodeAlreadyAssigned:       {400, "SeatAlreadyAssigned"},
	events.CodeNotPending:            {400, "SeatNotPending"},
	events.CodeInvalidToken:          {400, "InvalidInvitationToken"},
	events.CodeMemberEmailMismatch:   {400, "MemberEmailMismatch"},
	events.CodeInvalidSeatAssignment: {400, "InvalidSeatAssignmentRequest"},
	events.CodeMethodNotAllowed:      {405, "MethodNotAllowed"},    // seatd
	events.CodeTimeout:               {408, "RequestTimeout"},      // seatd
	events.CodeConflict:              {409, "IdempotencyConflict"}, // seatd: a reused Idempotency-Key
	events.CodeTooLarge:              {413, "RequestTooLarge"},     // seatd
	events.CodeRateLimited:           {429, "TooManyRequests"},     // seatd
	events.CodeDeadLettered:          {500, "RequestDeadLettered"}, // seatd: the worker gave up on the request
	events.CodeInternal:              {500, "InternalServerError"},
	events.CodeUnavailable:           {503, "ServiceUnavailable"}, // seatd: the request could not be queued or answered in time
}

// answerTo is the answer for outcome c; an outcome missing from the table
// is an internal error.
func answerTo(c events.Code) answer {
	if a, ok := answers[c]; ok {
		return a
	}
	return answers[events.CodeInternal]
}

// ErrorName is the "error" of an HTTP answer with outcome c, for tests
// that hold an answer against the ledger's outcome.
func ErrorName(c events.Code) string { return answerTo(c).name }
