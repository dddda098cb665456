// Package worker applies seat requests from JetStream to Postgres.
//
// A Worker pulls requests from the durable consumer shared by every worker
// replica, applies a batch of them in one transaction through storage
// (which enforces capacity and records each outcome in the request ledger),
// answers the ingress that waits for each one, and only then acks. A crash
// anywhere before the ack means redelivery, and the ledger turns the
// redelivery into a no-op that repeats the recorded answer.
//
// Failures: a transient error (Postgres away, serialization failure,
// deadlock) is retried with growing backoff for as long as it lasts; a
// request that fails any other way, or cannot be decoded, is moved to the
// dead-letter stream after a bounded number of deliveries, and its request
// is marked failed so that a poll or a waiting caller gets an answer.
//
// The package also runs the outbox relay (committed seat events and mail
// requests → JetStream), the re-queue sweeper for requests whose message
// was lost, and the expired-invitation sweeper.
package worker
