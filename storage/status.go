package storage

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Backlog is the work Postgres holds that has not gone through the
// pipeline yet. Reading it is cheap (indexed, or a small table), so
// /metrics reads it on every scrape.
type Backlog struct {
	QueuedRequests int64     // requests accepted and not yet applied
	OldestQueued   time.Time // zero when none
	OutboxDepth    int64     // events and mail requests not yet published
	OldestOutbox   time.Time // zero when none
}

// Backlog reads the ledger's queued requests and the outbox.
func (db *DB) Backlog(ctx context.Context) (Backlog, error) {
	var b Backlog
	var oldestQ, oldestO *time.Time
	err := db.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM requests WHERE status = 'queued'),
			(SELECT min(created_at) FROM requests WHERE status = 'queued'),
			(SELECT count(*) FROM outbox),
			(SELECT min(created_at) FROM outbox)`).Scan(&b.QueuedRequests, &oldestQ, &b.OutboxDepth, &oldestO)
	if oldestQ != nil {
		b.OldestQueued = oldestQ.UTC()
	}
	if oldestO != nil {
		b.OldestOutbox = oldestO.UTC()
	}
	return b, err
}

// InvitationStates counts invitations by delivery state (queued, sending,
// sent, failed, cancelled). It scans the table: for an operator's command,
// not for every scrape.
func (db *DB) InvitationStates(ctx context.Context) (map[string]int64, error) {
	rows, err := db.Pool.Query(ctx, `SELECT delivery_state, count(*) FROM invitations GROUP BY delivery_state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			return nil, err
		}
		out[state] = n
	}
	return out, rows.Err()
}

// PoolUsage is one seat pool's fill.
type PoolUsage struct {
	Kind      string `json:"kind"` // subscription or order
	ID        string `json:"id"`
	Product   string `json:"product"`
	Seats     int    `json:"seats"`
	SeatsUsed int    `json:"seats_used"`
}

// FullestPools returns up to limit live pools (active subscriptions, paid
// orders) with seats, fullest first. It scans both tables: for an
// operator's command, not for every scrape.
func (db *DB) FullestPools(ctx context.Context, limit int) ([]PoolUsage, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT kind, p.id::text, prod.name, seats, seats_used FROM (
			SELECT 'subscription' AS kind, id, product_id, seats, seats_used FROM subscriptions
				WHERE status = 'active' AND seats > 0
			UNION ALL
			SELECT 'order', id, product_id, seats, seats_used FROM orders
				WHERE status = 'paid' AND seats > 0
		) p JOIN products prod ON prod.id = p.product_id
		ORDER BY seats_used::float8 / seats DESC, seats_used DESC, p.id
		LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (PoolUsage, error) {
		var p PoolUsage
		err := row.Scan(&p.Kind, &p.ID, &p.Product, &p.Seats, &p.SeatsUsed)
		return p, err
	})
}
