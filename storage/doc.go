// Package storage is seatd's Postgres layer and the source of truth.
//
// It owns the schema (embedded migrations, applied once under an advisory
// lock however many replicas start together), the seat transaction that
// enforces pool capacity under the pool's row lock (and resolves each
// assign's customer or member the same way on its set-based and serial
// paths), products, members and the claimed-subscriptions read, sessions
// and tokens (only hashes are stored), the request ledger that makes every
// request's effect happen once, the invitation delivery ledger, the
// transactional outbox, and a helper that finds or starts a real
// PostgreSQL server for seatd and for tests.
//
// It imports events for the vocabulary and nothing else of the project.
// Callers own transactions' lifetimes only through the functions here;
// every function that changes seats does so in one transaction.
package storage
