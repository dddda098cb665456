// Package ingress is seatd's thin HTTP edge.
//
// It serves two seat APIs on one set of handlers: the customer portal's
// (/v1/customer-portal/seats, for a customer's or member's session, on the
// customer's own pools) and the organization API (/v1/customer-seats, for
// an organization access token, on every pool of the organization).
//
// It authenticates the bearer token, validates the body, records the
// request as queued in the ledger, publishes it to JetStream and waits a
// bounded time for the worker's answer (or answers 202 at once for
// Prefer: respond-async). It never decides anything about seats: every
// change goes through the queue to the worker, and reads come straight
// from Postgres. Outcomes map to an HTTP status and Polar's error name in
// one place (the answers table in status.go), and every error body is in
// Polar's shape; unknown errors become 500 without details. One function
// (Server.authenticate) turns a bearer token into a caller.
package ingress
