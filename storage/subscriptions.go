package storage

import (
	"context"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
)

// MaxPageLimit is the largest page of a list, as Polar's
// API_PAGINATION_MAX_LIMIT.
const MaxPageLimit = 100

// ClaimedSubscriptions returns page (from 1) of the subscriptions in which
// the caller holds a claimed seat, limit (at most MaxPageLimit) per page,
// oldest subscription first, and how many there are in all. The caller is
// a member (memberID set: seats whose member it is) or a customer (seats
// whose customer it is; with the member model that is the purchaser, who
// then sees every subscription with a claimed seat, as in Polar).
// Canceled subscriptions are included, as Polar includes them.
func (db *DB) ClaimedSubscriptions(ctx context.Context, customerID, memberID string, page, limit int64) ([]events.CustomerSubscription, int64, error) {
	holder, who := "s.customer_id = $1", customerID
	if memberID != "" {
		holder, who = "s.member_id = $1", memberID
	}
	claimed := `EXISTS (SELECT 1 FROM seats s WHERE s.subscription_id = sub.id AND s.status = 'claimed' AND ` + holder + `)`
	limit = min(max(limit, 1), MaxPageLimit)
	offset := int64(math.MaxInt64) // a page no list reaches
	if page-1 < math.MaxInt64/limit {
		offset = (max(page, 1) - 1) * limit
	}
	var (
		total int64
		items = []events.CustomerSubscription{}
		now   = time.Now().UTC()
	)
	b := &pgx.Batch{}
	b.Queue(`SELECT count(*) FROM subscriptions sub WHERE `+claimed, who)
	b.Queue(`SELECT sub.id::text, sub.created_at, sub.modified_at, sub.amount, sub.currency, sub.recurring_interval,
			sub.recurring_interval_count, sub.status, sub.started_at, sub.canceled_at, sub.ended_at, sub.customer_id::text,
			sub.seats, (SELECT k.id::text FROM checkouts k WHERE k.subscription_id = sub.id ORDER BY k.created_at, k.id LIMIT 1),
			p.id::text, p.created_at, p.modified_at, p.name, p.description, p.recurring_interval, p.recurring_interval_count,
			o.id::text, o.created_at, o.modified_at, o.name, o.slug, o.member_model
		FROM subscriptions sub
		JOIN products p ON p.id = sub.product_id
		JOIN organizations o ON o.id = p.organization_id
		WHERE `+claimed+`
		ORDER BY sub.created_at, sub.id
		LIMIT $2 OFFSET $3`, who, limit, offset)
	err := sendReads(ctx, db.Pool, b, "claimed subscriptions",
		func(rows pgx.Rows) error {
			for rows.Next() {
				if err := rows.Scan(&total); err != nil {
					return err
				}
			}
			return nil
		},
		func(rows pgx.Rows) error {
			for rows.Next() {
				var (
					sub       events.CustomerSubscription
					startedAt time.Time
				)
				prod, org := &sub.Product, &sub.Product.Organization
				if err := rows.Scan(&sub.ID, &sub.CreatedAt, &sub.ModifiedAt, &sub.Amount, &sub.Currency, &sub.RecurringInterval,
					&sub.RecurringIntervalCount, &sub.Status, &startedAt, &sub.CanceledAt, &sub.EndedAt, &sub.CustomerID,
					&sub.Seats, &sub.CheckoutID,
					&prod.ID, &prod.CreatedAt, &prod.ModifiedAt, &prod.Name, &prod.Description, &prod.RecurringInterval,
					&prod.RecurringIntervalCount,
					&org.ID, &org.CreatedAt, &org.ModifiedAt, &org.Name, &org.Slug, &org.OrganizationFeatures.MemberModelEnabled); err != nil {
					return err
				}
				items = append(items, customerSubscription(sub, startedAt, now))
			}
			return nil
		})
	if err != nil {
		return nil, 0, err
	}
	return items, total, nil
}

// customerSubscription completes a subscription as read: times in UTC, the
// product's derived fields, and what seatd derives of the subscription
// itself (its current period, the end of a canceled one).
func customerSubscription(sub events.CustomerSubscription, startedAt, now time.Time) events.CustomerSubscription {
	prod, org := &sub.Product, &sub.Product.Organization
	for _, t := range []*time.Time{&sub.CreatedAt, &startedAt, &prod.CreatedAt, &org.CreatedAt} {
		utc(t)
	}
	for _, t := range []*time.Time{sub.ModifiedAt, sub.CanceledAt, sub.EndedAt, prod.ModifiedAt, org.ModifiedAt} {
		if t != nil {
			utc(t)
		}
	}
	sub.StartedAt, sub.ProductID = &startedAt, prod.ID
	prod.OrganizationID, prod.Visibility, prod.IsRecurring = org.ID, "public", prod.RecurringInterval != nil
	org.ProrationBehavior = "prorate"
	// The period that holds now, or for a subscription that ended, the
	// last one it had.
	at := now
	if sub.EndedAt != nil && sub.EndedAt.Before(now) {
		at = *sub.EndedAt
	}
	sub.CurrentPeriodStart, sub.CurrentPeriodEnd = events.BillingPeriod(startedAt, sub.RecurringInterval, sub.RecurringIntervalCount, at)
	sub.EndsAt = sub.EndedAt
	return sub
}
