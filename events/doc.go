// Package events is the language seatd's processes speak to each other.
//
// It owns the public request and response shapes of the Assign Seat API
// (SeatAssign, CustomerSeat, Member, CustomerSubscription and its billing
// period, the HTTPValidationError detail), the messages
// that travel through NATS JetStream (assign/claim/resend/revoke requests,
// their results, seat lifecycle events, invitation mail requests), the
// names of subjects, streams and consumers, and the result codes every role
// agrees on. It knows nothing of NATS servers or HTTP: JetStream setup and
// publishing live in events/stream, and the code → HTTP status and error
// name table in the ingress.
//
// It imports nothing else of the project: storage, worker, mailer and the
// ingress depend on it, never the reverse. What it promises: a message that
// Decode accepts is well formed, and Validate rejects everything the API
// contract rejects, so no malformed request is ever published.
package events
