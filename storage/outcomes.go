package storage

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
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
	rows, err := db.Pool.Query(ctx, `SELECT `+recordColumns+` FROM requests WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("outcomes: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) { return scanRecord(row) })
	if err != nil {
		return nil, fmt.Errorf("outcomes: %w", err)
	}
	for _, rec := range recs {
		out[rec.ID] = rec
	}
	return out, nil
}
