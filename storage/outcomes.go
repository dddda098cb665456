package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/seatd/seatd/events"
)

// Outcomes reads the ledger records of many requests at once, keyed by
// request id; an id the ledger does not know is absent from the map. It is
// unscoped, for operators: a bulk import looks up which of its
// deterministic request ids already have an outcome (to resume without
// publishing them again) and polls for the outcomes of the rest.
func (db *DB) Outcomes(ctx context.Context, ids []string) (map[string]Record, error) {
	out := make(map[string]Record, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Pool.Query(ctx, `SELECT id, op, status, result, coalesce(batch_index, 0), created_at
		FROM requests WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("outcomes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			rec    Record
			op     string
			result []byte
		)
		if err := rows.Scan(&rec.ID, &op, &rec.Status, &result, &rec.BatchIndex, &rec.CreatedAt); err != nil {
			return nil, fmt.Errorf("outcomes: %w", err)
		}
		rec.Op = events.Op(op)
		rec.CreatedAt = rec.CreatedAt.In(time.UTC)
		if result != nil {
			rec.Result = new(events.Result)
			if err := json.Unmarshal(result, rec.Result); err != nil {
				return nil, fmt.Errorf("outcomes: request %s: stored result: %w", rec.ID, err)
			}
		}
		out[rec.ID] = rec
	}
	return out, rows.Err()
}
