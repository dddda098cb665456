package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
)

// goSteps run after a migration's SQL, in its transaction.
var goSteps = map[int]func(context.Context, pgx.Tx) error{
	2: keyEmails,
}

// keyEmails keys the addresses 0002_security.sql could not (non-ASCII
// ones need IDNA), makes email_key NOT NULL, and moves live member-model
// seats to the new holder key. Where two rows turn out to be one mailbox,
// the older keeps the key and the newer is marked, never deleted.
func keyEmails(ctx context.Context, tx pgx.Tx) error {
	for _, t := range []struct{ table, parent string }{{"customers", "organization_id"}, {"members", "customer_id"}} {
		rows, err := tx.Query(ctx, `SELECT id, `+t.parent+`, email, created_at FROM `+t.table+` WHERE email_key IS NULL ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		type row struct {
			id, parent, email string
			created           time.Time
		}
		todo, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.parent, &x.email, &x.created)
		})
		if err != nil {
			return err
		}
		for _, x := range todo {
			key := events.EmailKey(x.email)
			var (
				otherID      string
				otherCreated time.Time
			)
			err := tx.QueryRow(ctx, `SELECT id, created_at FROM `+t.table+` WHERE `+t.parent+` = $1 AND email_key = $2`,
				x.parent, key).Scan(&otherID, &otherCreated)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return err
			case otherCreated.Before(x.created) || (otherCreated.Equal(x.created) && otherID < x.id):
				key += " #duplicate " + x.id // the older row keeps the key
			default: // this row is older: it takes the key from the newer one
				if _, err := tx.Exec(ctx, `UPDATE `+t.table+` SET email_key = email_key || ' #duplicate ' || id WHERE id = $1`, otherID); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `UPDATE `+t.table+` SET email_key = $2 WHERE id = $1`, x.id, key); err != nil {
				return fmt.Errorf("key %s %s: %w", t.table, x.id, err)
			}
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+t.table+` ALTER COLUMN email_key SET NOT NULL`); err != nil {
			return err
		}
	}
	// Live member-model seats named their occupant by the lower-cased
	// address; re-key them unless another live seat of the pool already
	// holds the new key (then both stay, as before).
	rows, err := tx.Query(ctx, `SELECT s.id, 'email:' || m.email_key FROM seats s JOIN members m ON m.id = s.member_id
		WHERE s.status IN ('pending', 'claimed') AND s.holder LIKE 'email:%' AND s.holder <> 'email:' || m.email_key
		AND m.email_key NOT LIKE '% #duplicate %'`)
	if err != nil {
		return err
	}
	type seatKey struct{ id, holder string }
	seats, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seatKey, error) {
		var x seatKey
		return x, r.Scan(&x.id, &x.holder)
	})
	if err != nil {
		return err
	}
	for _, x := range seats {
		if _, err := tx.Exec(ctx, `UPDATE seats s SET holder = $2 WHERE id = $1 AND NOT EXISTS (
			SELECT 1 FROM seats o WHERE o.status IN ('pending', 'claimed') AND o.holder = $2
			AND coalesce(o.subscription_id, o.order_id) = coalesce(s.subscription_id, s.order_id))`, x.id, x.holder); err != nil {
			return fmt.Errorf("re-key seat %s: %w", x.id, err)
		}
	}
	return nil
}
