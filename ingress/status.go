package ingress

import "github.com/seatd/seatd/events"

var statuses = map[events.Code]int{
	events.CodeOK:                  200,
	events.CodeInvalid:             422,
	events.CodeBadRequest:          400,
	events.CodeUnauthorized:        401,
	events.CodeForbidden:           403,
	events.CodeInsufficientScope:   403,
	events.CodeSeatPricingDisabled: 403,
	events.CodeNotFound:            404,
	events.CodeOrderNotPaid:        400,
	events.CodeNoAvailableSeats:    400,
	events.CodeAlreadyAssigned:     400,
	events.CodeNotPending:          400,
	events.CodeInvalidToken:        400,
	events.CodeConflict:            409,
	events.CodeTooLarge:            413,
	events.CodeTimeout:             408,
	events.CodeRateLimited:         429,
	events.CodeDeadLettered:        500,
	events.CodeUnavailable:         503,
	events.CodeInternal:            500,
}

// httpStatus is the status code an HTTP response with outcome c carries:
// the one table that maps the worker's outcomes to HTTP.
func httpStatus(c events.Code) int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return 500
}
