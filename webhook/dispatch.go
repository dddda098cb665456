package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
)

// due is a delivery a dispatcher has leased for one attempt.
type due struct {
	id, endpointID, url, eventType string
	attempt                        int // this attempt's number since created or redelivered
	sealed, body                   []byte
}

// dispatch sends due deliveries until ctx is cancelled; then it finishes
// the attempts in flight and hands back the ones it had claimed but not
// started. Concurrency workers make the attempts; this loop claims ahead
// into a buffer of the same size, so claims overlap attempts and grow in
// size when the database is slow. A buffered delivery waits at most one
// attempt (Timeout), well within its lease.
func (r *Runner) dispatch(ctx context.Context) {
	work := make(chan due, r.cfg.Concurrency)
	var mu sync.Mutex
	var unstarted []string
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if ctx.Err() != nil {
					mu.Lock()
					unstarted = append(unstarted, d.id)
					mu.Unlock()
					continue
				}
				r.attempt(context.WithoutCancel(ctx), d)
				r.poke() // the seat's next event may be due now
			}
		}()
	}
	defer func() {
		close(work)
		wg.Wait()
		r.release(unstarted)
	}()
	for ctx.Err() == nil {
		if room := cap(work) - len(work); room > 0 {
			batch, err := r.claim(ctx, room)
			if err != nil && ctx.Err() == nil {
				r.log.Warn("cannot look for due webhook deliveries; retrying", "error", err)
			}
			for _, d := range batch {
				work <- d // never blocks: only this loop sends, and there was room
			}
			if len(batch) == room {
				continue
			}
		}
		t := time.NewTimer(r.cfg.PollInterval)
		select {
		case <-r.pokes:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// release hands back deliveries claimed but not attempted, so another
// replica need not wait for their leases to run out.
func (r *Runner) release(ids []string) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.cfg.DB.Pool.Exec(ctx, `UPDATE webhook_deliveries SET leased_until = NULL, attempts = attempts - 1
		WHERE id = ANY($1::uuid[]) AND status = 'pending'`, ids); err != nil {
		r.log.Warn("could not release unstarted webhook deliveries; their leases will run out", "error", err)
	}
}

// claim leases up to n due deliveries. A delivery is due when it is
// pending, its retry time has come, no live lease holds it, its endpoint is
// enabled, and it is next in its seat's order for that endpoint: no earlier
// version of the seat is pending for the endpoint, and every earlier
// version has been ingested (or OrderGuard has passed since this one was).
// SKIP LOCKED lets replicas claim side by side; the lease (the attempt's
// timeout plus a margin) hands a delivery whose dispatcher died to another.
func (r *Runner) claim(ctx context.Context, n int) ([]due, error) {
	// A claimed delivery may wait in the buffer for one attempt before its
	// own: two timeouts and a margin for recording.
	lease := 2*r.cfg.Timeout + r.cfg.LeaseMargin
	rows, err := r.cfg.DB.Pool.Query(ctx, `
		WITH picked AS (
			SELECT d.id FROM webhook_deliveries d
			JOIN webhook_endpoints e ON e.id = d.endpoint_id
			WHERE d.status = 'pending' AND d.next_attempt_at <= now()
			  AND (d.leased_until IS NULL OR d.leased_until < now())
			  AND e.enabled AND e.deleted_at IS NULL
			  AND d.seat_version = (SELECT min(p.seat_version) FROM webhook_deliveries p
			                        WHERE p.endpoint_id = d.endpoint_id AND p.seat_id = d.seat_id AND p.status = 'pending')
			  AND (d.seat_version = 1
			       OR d.created_at < now() - $2::interval
			       OR (SELECT count(*) FROM webhook_events v
			           WHERE v.seat_id = d.seat_id AND v.version < d.seat_version) >= d.seat_version - 1)
			ORDER BY d.next_attempt_at
			LIMIT $1
			FOR UPDATE OF d SKIP LOCKED
		)
		UPDATE webhook_deliveries d SET leased_until = now() + $3::interval, attempts = d.attempts + 1
		FROM picked, webhook_endpoints e, webhook_events v
		WHERE d.id = picked.id AND e.id = d.endpoint_id AND v.id = d.event_id
		RETURNING d.id, d.endpoint_id, e.url, e.secret_sealed, v.type, v.body, d.attempts`,
		n, r.cfg.OrderGuard.String(), lease.String())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (due, error) {
		var d due
		err := row.Scan(&d.id, &d.endpointID, &d.url, &d.sealed, &d.eventType, &d.body, &d.attempt)
		return d, err
	})
}

// outcome is what one HTTP attempt came to.
type outcome struct {
	started  time.Time
	duration time.Duration
	status   int    // 0: no response
	err      string // "" for a 2xx
	response string
}

func (o outcome) ok() bool { return o.err == "" }

// attempt makes one HTTP attempt of d and records it.
func (r *Runner) attempt(ctx context.Context, d due) {
	log := r.log.With("delivery_id", d.id, "endpoint_id", d.endpointID, "type", d.eventType, "attempt", d.attempt)
	var o outcome
	secret, err := r.sealer.Open(d.endpointID, d.sealed)
	if err != nil {
		o = outcome{started: time.Now(), err: err.Error()}
	} else {
		o = r.send(ctx, d, secret)
	}
	if err := r.record(ctx, d, o); err != nil {
		// The lease runs out and the delivery is attempted again, with the
		// same webhook-id: at least once, never dropped.
		log.Error("cannot record webhook attempt; it will be repeated", "error", err)
		return
	}
	switch {
	case o.ok():
		log.Info("webhook delivered", "status", o.status, "duration", o.duration)
	default:
		log.Warn("webhook attempt failed", "status", o.status, "error", o.err)
	}
}

// send POSTs the delivery's body, signed now.
func (r *Runner) send(ctx context.Context, d due, secret string) outcome {
	o := outcome{started: time.Now()}
	ts := o.started.Unix()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		o.err = err.Error()
		return o
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "seatd-webhooks")
	req.Header.Set("webhook-id", d.id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(secret, d.id, ts, d.body))
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		o.duration = time.Since(o.started)
		o.err = describeSendError(err, r.cfg.Timeout)
		return o
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	// Read as far as we care; a close error changes no outcome.
	_ = resp.Body.Close()
	o.duration = time.Since(o.started)
	o.status = resp.StatusCode
	o.response = toValidUTF8(head)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		o.err = fmt.Sprintf("HTTP %d", resp.StatusCode)
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
			o.err += " (redirects are not followed: " + loc + ")"
		}
	}
	return o
}

func describeSendError(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fmt.Sprintf("no response within %v", timeout)
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		err = ue.Unwrap() // drop the "Post URL:" prefix: the log names the endpoint
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func toValidUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}

// record writes the attempt to the delivery log and moves the delivery on:
// succeeded; back to pending with a retry time; or failed after
// MaxAttempts, which may disable its endpoint. It retries while the
// database is briefly away: an attempt's outcome is worth waiting for.
func (r *Runner) record(ctx context.Context, d due, o outcome) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		err := r.recordTx(ctx, d, o)
		if err == nil || !storage.IsTransient(err) || ctx.Err() != nil {
			return err
		}
		sleep(ctx, wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// nullable returns the attempt's status code, error and response as
// database values.
func (o outcome) nullable() (status *int, errText, response *string) {
	if o.status != 0 {
		status = &o.status
	}
	if o.err != "" {
		errText = &o.err
	}
	if o.response != "" {
		response = &o.response
	}
	return status, errText, response
}

const insertAttempt = `INSERT INTO webhook_attempts (delivery_id, started_at, duration_ms, status_code, error, response)
	VALUES ($1, $2, $3, $4, $5, $6)`

// recordTx records the attempt; in a transaction of its own when the
// delivery gives up (which may disable the endpoint), otherwise as one
// pipelined implicit transaction, the common case's single round trip.
func (r *Runner) recordTx(ctx context.Context, d due, o outcome) error {
	status, errText, response := o.nullable()
	if o.ok() || d.attempt < r.cfg.MaxAttempts {
		var b pgx.Batch
		b.Queue(insertAttempt, d.id, o.started, o.duration.Milliseconds(), status, errText, response)
		// Only a delivery still pending moves on: one skipped while this
		// attempt was in flight (its endpoint disabled or deleted) stays so.
		if o.ok() {
			b.Queue(`UPDATE webhook_deliveries SET status = 'succeeded', completed_at = now(),
				leased_until = NULL, last_status_code = $2, last_error = NULL WHERE id = $1 AND status = 'pending'`, d.id, status)
		} else {
			delay := stream.Backoff(r.cfg.RetryBase, r.cfg.RetryMax, uint64(d.attempt))
			b.Queue(`UPDATE webhook_deliveries SET next_attempt_at = now() + $2::interval,
				leased_until = NULL, last_status_code = $3, last_error = $4 WHERE id = $1 AND status = 'pending'`,
				d.id, delay.String(), status, errText)
		}
		return r.cfg.DB.Pool.SendBatch(ctx, &b).Close()
	}
	return pgx.BeginFunc(ctx, r.cfg.DB.Pool, func(tx pgx.Tx) error { return r.giveUp(ctx, tx, d, o) })
}

// giveUp records the last attempt of a delivery and marks it failed.
func (r *Runner) giveUp(ctx context.Context, tx pgx.Tx, d due, o outcome) error {
	status, errText, response := o.nullable()
	if _, err := tx.Exec(ctx, insertAttempt, d.id, o.started, o.duration.Milliseconds(), status, errText, response); err != nil {
		return err
	}
	// Lock the endpoint before the delivery, as Delete and a disabling
	// do, so two of them never wait for each other.
	var enabled bool
	if err := tx.QueryRow(ctx, `SELECT enabled FROM webhook_endpoints WHERE id = $1 FOR UPDATE`, d.endpointID).Scan(&enabled); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'failed', completed_at = now(),
		leased_until = NULL, last_status_code = $2, last_error = $3 WHERE id = $1 AND status = 'pending'`,
		d.id, status, fmt.Sprintf("gave up after %d attempts: %s", d.attempt, o.err))
	if err != nil || tag.RowsAffected() == 0 || !enabled {
		return err
	}
	return r.maybeDisable(ctx, tx, d.endpointID)
}

// maybeDisable disables the endpoint when its last DisableAfter completed
// deliveries since it was enabled all failed, and skips its pending
// deliveries. The caller holds the endpoint's row lock, which serialises
// the decision between dispatchers recording failures side by side.
func (r *Runner) maybeDisable(ctx context.Context, tx pgx.Tx, endpointID string) error {
	var completed, failed int
	if err := tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'failed') FROM (
			SELECT d.status FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
			WHERE d.endpoint_id = $1 AND d.status IN ('succeeded', 'failed') AND d.completed_at >= e.enabled_at
			ORDER BY d.completed_at DESC, d.id LIMIT $2) last`, endpointID, r.cfg.DisableAfter).Scan(&completed, &failed); err != nil {
		return err
	}
	if completed < r.cfg.DisableAfter || failed < completed {
		return nil
	}
	reason := fmt.Sprintf("the last %d deliveries failed", r.cfg.DisableAfter)
	if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET enabled = false, disabled_at = now(), disabled_reason = $2,
		modified_at = now() WHERE id = $1`, endpointID, reason); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'skipped', completed_at = now(), leased_until = NULL,
		last_error = 'endpoint disabled' WHERE endpoint_id = $1 AND status = 'pending'`, endpointID)
	if err != nil {
		return err
	}
	r.log.Warn("webhook endpoint disabled; re-enable it with seatctl webhook enable", "endpoint_id", endpointID,
		"reason", reason, "skipped", tag.RowsAffected())
	return nil
}
