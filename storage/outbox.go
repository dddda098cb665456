package storage

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// OutboxMessage is a committed message waiting to be published.
type OutboxMessage struct {
	ID      int64
	Subject string
	MsgID   string
	Payload []byte
}

// relayLock makes one relay at a time publish, whatever the number of
// replicas, so messages reach the streams in commit order per seat.
const relayLock = 0x5ea7d002

// RelayOutbox hands up to limit outbox messages, oldest first, to publish
// and deletes them once publish returns nil, in one transaction. If publish
// fails or the process dies, the messages stay and are published again
// later under the same MsgID, which JetStream deduplicates. It returns how
// many messages were relayed; 0 also when another replica holds the relay.
func (db *DB) RelayOutbox(ctx context.Context, limit int, publish func(context.Context, []OutboxMessage) error) (int, error) {
	n := 0
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var leader bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, relayLock).Scan(&leader); err != nil || !leader {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id, subject, msg_id, payload FROM outbox ORDER BY id LIMIT $1`, limit)
		if err != nil {
			return err
		}
		msgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OutboxMessage, error) {
			var m OutboxMessage
			err := row.Scan(&m.ID, &m.Subject, &m.MsgID, &m.Payload)
			return m, err
		})
		if err != nil || len(msgs) == 0 {
			return err
		}
		if err := publish(ctx, msgs); err != nil {
			return err
		}
		ids := make([]int64, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		if _, err := tx.Exec(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, ids); err != nil {
			return err
		}
		n = len(msgs)
		return nil
	})
	return n, err
}

// ReleaseExpired revokes up to limit pending seats whose invitation
// expired before now, freeing their slots (SEATD_EXPIRED_INVITATIONS=release).
// Seats locked by a concurrent change are skipped and found next time.
func (db *DB) ReleaseExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	n := 0
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM seats WHERE status = 'pending' AND invitation_token_expires_at <= $1
			ORDER BY invitation_token_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, id := range ids {
			seat, err := loadSeat(ctx, tx, id)
			if err != nil {
				return err
			}
			if _, err := revokeLocked(ctx, tx, seat, now.UTC()); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	return n, err
}
