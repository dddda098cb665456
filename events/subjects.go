package events

import "time"

// Subjects, streams and durable consumers.
const (
	// RequestsSubject carries Requests, RequestsStream keeps them until a
	// worker has applied them (work-queue retention).
	RequestsSubject = "seatd.requests"
	RequestsStream  = "SEATD_REQUESTS"
	WorkerConsumer  = "seatd-worker"

	// MailSubject carries MailRequests to the mailer.
	MailSubject    = "seatd.mail.invitation"
	MailStream     = "SEATD_MAIL"
	MailerConsumer = "seatd-mailer"

	// SeatEventsSubjectPrefix + ".assigned" / ".claimed" / ".revoked" carry
	// SeatEvents; SeatEventsStream keeps them for consumers (webhooks, audit).
	SeatEventsSubjectPrefix = "seatd.events.seat"
	SeatEventsStream        = "SEATD_SEAT_EVENTS"

	// DeadLetterSubject carries DeadLetters; DeadLetterStream keeps them
	// until an operator replays or purges them.
	DeadLetterSubject = "seatd.dlq.requests"
	DeadLetterStream  = "SEATD_DLQ"
)

// SeatEventSubject is the subject an event of type t is published on, e.g.
// seatd.events.seat.claimed.
func SeatEventSubject(t SeatEventType) string {
	short := string(t)
	if i := len("customer_seat."); len(short) > i {
		short = short[i:]
	}
	return SeatEventsSubjectPrefix + "." + short
}

// DeadLetter is a request the worker gave up on, with why.
type DeadLetter struct {
	Request    []byte    `json:"request"` // the original message, verbatim
	RequestID  string    `json:"request_id,omitempty"`
	Reason     string    `json:"reason"`
	Deliveries uint64    `json:"deliveries"`
	FailedAt   time.Time `json:"failed_at"`
}
