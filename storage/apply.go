package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
)

// Owner is whom a caller acts for, and what its reads and writes are
// scoped to: a customer (portal sessions, for the customer's own pools) or
// an organization (organization access tokens, for every pool of the
// organization). Exactly one is set.
type Owner struct {
	CustomerID     string
	OrganizationID string
}

// OwnerOf is the owner a request acts for.
func OwnerOf(r events.Request) Owner {
	return Owner{CustomerID: r.CustomerID, OrganizationID: r.OrganizationID}
}

// Ledger is the owner's key space in the request ledger: its
// Idempotency-Keys, requests and batches. A customer's is its id (shared by
// its sessions and its members'), an organization's "org:<id>" (shared by
// its tokens).
func (o Owner) Ledger() string {
	if o.OrganizationID != "" {
		return "org:" + o.OrganizationID
	}
	return o.CustomerID
}

// where is the SQL condition that a row belongs to o, given the columns
// naming the row's owning customer and its organization, with o's id as
// parameter $n.
func (o Owner) where(customerCol, orgCol string, n int) (string, string) {
	if o.OrganizationID != "" {
		return fmt.Sprintf("%s = $%d", orgCol, n), o.OrganizationID
	}
	return fmt.Sprintf("%s = $%d", customerCol, n), o.CustomerID
}

// owns reports whether pool p belongs to o.
func (o Owner) owns(p *pool) bool {
	if o.OrganizationID != "" {
		return p.orgID == o.OrganizationID
	}
	return p.customerID == o.CustomerID
}

// Caller is the ledger's owner of a request: its Owner's Ledger, and the
// token hash for the unauthenticated claim.
func Caller(r events.Request) string {
	if r.Op == events.OpClaim {
		return "claim:" + r.TokenHash
	}
	return OwnerOf(r).Ledger()
}

// applyOne records one request in the ledger and applies it: the serial
// path, one statement per step.
func (db *DB) applyOne(ctx context.Context, tx pgx.Tx, st Settings, r events.Request, now time.Time) (events.Result, error) {
	payload, err := events.Marshal(r)
	if err != nil {
		return events.Result{}, err
	}
	submitted := r.SubmittedAt
	if submitted.IsZero() {
		submitted = now
	}
	var batchID *string
	var batchIndex *int
	if r.BatchID != "" {
		batchID, batchIndex = &r.BatchID, &r.BatchIndex
	}
	// Requests published without passing the ingress (imports, replays)
	// have no ledger row yet. The row lock taken here serialises two
	// workers holding the same request.
	var status string
	var stored []byte
	if err := tx.QueryRow(ctx, `INSERT INTO requests (id, op, caller, payload, batch_id, batch_index, created_at, deliveries)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 1)
		ON CONFLICT (id) DO UPDATE SET deliveries = requests.deliveries + 1
		RETURNING status, result`,
		r.ID, r.Op, Caller(r), payload, batchID, batchIndex, submitted).Scan(&status, &stored); err != nil {
		return events.Result{}, err
	}
	if status != "queued" {
		var res events.Result
		if err := json.Unmarshal(stored, &res); err != nil {
			return events.Result{}, fmt.Errorf("stored result: %w", err)
		}
		return res, nil
	}

	return db.applyQueued(ctx, tx, st, r, now)
}

func complete(ctx context.Context, tx pgx.Tx, res events.Result, now time.Time) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	status := "succeeded"
	if !res.OK() {
		status = "failed"
	}
	_, err = tx.Exec(ctx, `UPDATE requests SET status = $2, code = $3, result = $4, completed_at = $5 WHERE id = $1`,
		res.RequestID, status, res.Code, b, now)
	return err
}

// Fail records a terminal failure for a request the worker gave up on (a
// dead letter), so a poll or a waiting caller gets an answer. A request
// that already has an outcome keeps it.
func (db *DB) Fail(ctx context.Context, r events.Request, code events.Code, detail string) (events.Result, error) {
	res := events.Result{RequestID: r.ID, Code: code, Detail: detail}
	payload, _ := events.Marshal(r)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO requests (id, op, caller, payload, created_at)
			VALUES ($1, $2, $3, $4, now()) ON CONFLICT (id) DO NOTHING`, r.ID, r.Op, Caller(r), payload); err != nil {
			return err
		}
		var status string
		var stored []byte
		if err := tx.QueryRow(ctx, `SELECT status, result FROM requests WHERE id = $1 FOR UPDATE`, r.ID).Scan(&status, &stored); err != nil {
			return err
		}
		if status != "queued" {
			return json.Unmarshal(stored, &res)
		}
		return complete(ctx, tx, res, time.Now().UTC())
	})
	return res, err
}

// Reopen puts a dead-lettered request back to queued so a replay can apply
// it. Requests with any other outcome are left alone: a request that was in
// fact applied is never applied twice.
func (db *DB) Reopen(ctx context.Context, id string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE requests SET status = 'queued', code = NULL, result = NULL, completed_at = NULL
		WHERE id = $1 AND status = 'failed' AND code = $2`, id, events.CodeDeadLettered)
	return err
}
