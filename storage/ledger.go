package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
)

// Record is a request as the ledger knows it.
type Record struct {
	ID         string
	Op         events.Op
	Status     string // queued, succeeded, failed
	Result     *events.Result
	BatchIndex int
	CreatedAt  time.Time
	// Replayed is set by Submit when the Idempotency-Key matched an earlier
	// request: Record then describes that request.
	Replayed bool
}

// Submission is what the ingress records before it publishes a request.
type Submission struct {
	Request        events.Request
	IdempotencyKey string
	BodyHash       []byte
}

var errKeyReuse = events.Errorf(events.CodeConflict,
	"Idempotency-Key was already used with a different request; use a new key for a new request")

// Submit records a request as queued before it is published. With an
// Idempotency-Key that this caller used before, it records nothing and
// returns the earlier request (Replayed), or a CodeConflict error when the
// body differs. Keys are scoped to the caller.
func (db *DB) Submit(ctx context.Context, s Submission) (Record, error) {
	r := s.Request
	payload, err := json.Marshal(r)
	if err != nil {
		return Record{}, err
	}
	var key *string
	if s.IdempotencyKey != "" {
		key = &s.IdempotencyKey
	}
	tag, err := db.Pool.Exec(ctx, `INSERT INTO requests (id, op, caller, idempotency_key, body_hash, payload, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
		r.ID, r.Op, Caller(r), key, s.BodyHash, payload, r.SubmittedAt)
	if err != nil {
		return Record{}, fmt.Errorf("submit: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return Record{ID: r.ID, Op: r.Op, Status: "queued", CreatedAt: r.SubmittedAt}, nil
	}
	if key == nil {
		return Record{}, fmt.Errorf("submit: request id %s already exists", r.ID)
	}
	return db.replayKey(ctx, s)
}

// replayKey returns the request recorded earlier under s's caller and
// Idempotency-Key, or errKeyReuse when the body differs.
func (db *DB) replayKey(ctx context.Context, s Submission) (Record, error) {
	r := s.Request
	var (
		rec    Record
		hash   []byte
		result []byte
		op     string
	)
	err := db.Pool.QueryRow(ctx, `SELECT id, op, status, result, body_hash, created_at FROM requests
		WHERE caller = $1 AND idempotency_key = $2`, Caller(r), s.IdempotencyKey).Scan(&rec.ID, &op, &rec.Status, &result, &hash, &rec.CreatedAt)
	if err != nil {
		return Record{}, fmt.Errorf("submit: idempotency lookup: %w", err)
	}
	if !bytes.Equal(hash, s.BodyHash) || events.Op(op) != r.Op {
		return Record{}, errKeyReuse
	}
	rec.Op, rec.Replayed = events.Op(op), true
	if result != nil {
		rec.Result = new(events.Result)
		if err := json.Unmarshal(result, rec.Result); err != nil {
			return Record{}, err
		}
	}
	return rec, nil
}

// Request returns a request owned by caller; anyone else's is not found.
func (db *DB) Request(ctx context.Context, id, caller string) (Record, error) {
	if !isUUIDString(id) {
		return Record{}, events.Errorf(events.CodeNotFound, "Request not found")
	}
	rec, err := scanRecord(db.Pool.QueryRow(ctx, `SELECT `+recordColumns+` FROM requests
		WHERE id = $1 AND caller = $2`, id, caller))
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, events.Errorf(events.CodeNotFound, "Request not found")
	}
	return rec, err
}

// recordColumns are the columns scanRecord reads.
const recordColumns = `id, op, status, result, coalesce(batch_index, 0), created_at`

func scanRecord(row pgx.Row) (Record, error) {
	var (
		rec    Record
		op     string
		result []byte
	)
	if err := row.Scan(&rec.ID, &op, &rec.Status, &result, &rec.BatchIndex, &rec.CreatedAt); err != nil {
		return Record{}, err
	}
	rec.Op = events.Op(op)
	rec.CreatedAt = rec.CreatedAt.UTC()
	if result != nil {
		rec.Result = new(events.Result)
		if err := json.Unmarshal(result, rec.Result); err != nil {
			return Record{}, fmt.Errorf("request %s: stored result: %w", rec.ID, err)
		}
	}
	return rec, nil
}

// Batch is a batch and the outcome of each of its items, in order.
type Batch struct {
	ID        string
	Size      int
	CreatedAt time.Time
	Items     []Record
	Replayed  bool
}

// SubmitBatch records a batch and its requests as queued, in one
// transaction. An Idempotency-Key seen before returns the earlier batch.
func (db *DB) SubmitBatch(ctx context.Context, batchID, caller, key string, bodyHash []byte, reqs []events.Request) (Batch, error) {
	var keyArg *string
	if key != "" {
		keyArg = &key
	}
	var out Batch
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO batches (id, caller, size, idempotency_key, body_hash) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT DO NOTHING`, batchID, caller, len(reqs), keyArg, bodyHash)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			if keyArg == nil {
				return fmt.Errorf("batch id %s already exists", batchID)
			}
			var hash []byte
			if err := tx.QueryRow(ctx, `SELECT id, body_hash FROM batches WHERE caller = $1 AND idempotency_key = $2`,
				caller, key).Scan(&out.ID, &hash); err != nil {
				return err
			}
			if !bytes.Equal(hash, bodyHash) {
				return errKeyReuse
			}
			out.Replayed = true
			return nil
		}
		rows := make([][]any, len(reqs))
		for i, r := range reqs {
			payload, err := json.Marshal(r)
			if err != nil {
				return err
			}
			rows[i] = []any{r.ID, string(r.Op), caller, batchID, r.BatchIndex, payload, r.SubmittedAt}
		}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"requests"},
			[]string{"id", "op", "caller", "batch_id", "batch_index", "payload", "created_at"}, pgx.CopyFromRows(rows))
		out.ID = batchID
		return err
	})
	return out, err
}

// Batch returns a batch owned by caller with every item's state.
func (db *DB) Batch(ctx context.Context, id, caller string) (Batch, error) {
	notFound := events.Errorf(events.CodeNotFound, "Batch not found")
	if !isUUIDString(id) {
		return Batch{}, notFound
	}
	b := Batch{ID: id}
	err := db.Pool.QueryRow(ctx, `SELECT size, created_at FROM batches WHERE id = $1 AND caller = $2`, id, caller).
		Scan(&b.Size, &b.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Batch{}, notFound
	}
	if err != nil {
		return Batch{}, err
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+recordColumns+` FROM requests WHERE batch_id = $1 ORDER BY batch_index`, id)
	if err != nil {
		return Batch{}, err
	}
	b.Items, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) { return scanRecord(row) })
	return b, err
}

// Queued returns up to limit requests still queued that were submitted
// before olderThan, oldest first: the candidates for re-publishing when a
// message may have been lost between the ledger and the stream.
func (db *DB) Queued(ctx context.Context, olderThan time.Time, limit int) ([]events.Request, error) {
	rows, err := db.Pool.Query(ctx, `SELECT payload FROM requests WHERE status = 'queued' AND created_at < $1
		ORDER BY created_at LIMIT $2`, olderThan, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []events.Request
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			return nil, err
		}
		var r events.Request
		if err := json.Unmarshal(payload, &r); err != nil {
			continue
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
