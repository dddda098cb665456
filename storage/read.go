package storage

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/secret"
)

// SeatList is a pool's seats (including revoked ones) and its capacity.
type SeatList struct {
	Seats          []events.CustomerSeat
	AvailableSeats int
	TotalSeats     int
}

// ListSeats lists a subscription's or an order's seats, scoped to owner.
func (db *DB) ListSeats(ctx context.Context, owner Owner, subscriptionID, orderID string) (SeatList, error) {
	table, column, id, kind := "subscriptions", "subscription_id", subscriptionID, "Subscription"
	if orderID != "" {
		table, column, id, kind = "orders", "order_id", orderID, "Order"
	}
	notFound := events.Errorf(events.CodeNotFound, "%s not found", kind)
	if _, ok := events.ParseUUID(id); !ok {
		return SeatList{}, notFound
	}
	var out SeatList
	var used int
	var pricing bool
	owned, ownerID := owner.where("p.customer_id", "c.organization_id", 2)
	err := db.Pool.QueryRow(ctx, `SELECT p.seats, p.seats_used, o.seat_based_pricing FROM `+table+` p
		JOIN customers c ON c.id = p.customer_id JOIN organizations o ON o.id = c.organization_id
		WHERE p.id = $1 AND `+owned, id, ownerID).Scan(&out.TotalSeats, &used, &pricing)
	if errors.Is(err, pgx.ErrNoRows) {
		return SeatList{}, notFound
	}
	if err != nil {
		return SeatList{}, err
	}
	if !pricing { // checked after the lookup, as Polar: someone else's pool is 404 first
		return SeatList{}, errSeatPricingDisabled
	}
	out.AvailableSeats = max(out.TotalSeats-used, 0)
	rows, err := db.Pool.Query(ctx, "SELECT "+seatColumns+seatFrom+"WHERE s."+column+" = $1 ORDER BY s.created_at, s.id", id)
	if err != nil {
		return SeatList{}, err
	}
	defer rows.Close()
	out.Seats = []events.CustomerSeat{}
	for rows.Next() {
		r, err := scanSeat(rows)
		if err != nil {
			return SeatList{}, err
		}
		out.Seats = append(out.Seats, r.seat)
	}
	return out, rows.Err()
}

// ClaimInfo is what an invitee sees before claiming.
type ClaimInfo struct {
	ProductName      string    `json:"product_name"`
	ProductID        string    `json:"product_id"`
	OrganizationName string    `json:"organization_name"`
	OrganizationSlug string    `json:"organization_slug"`
	CustomerEmail    string    `json:"customer_email"`
	CanClaim         bool      `json:"can_claim"`
	ExpiresAt        time.Time `json:"expires_at"`
}

// ClaimInfoByToken reads a live invitation without changing anything, so a
// mail scanner following the link cannot use it up. Unknown, expired,
// claimed and revoked tokens are all not found; as Polar, a live token of
// an organization without seat-based pricing is refused after that lookup.
func (db *DB) ClaimInfoByToken(ctx context.Context, token string) (ClaimInfo, error) {
	var info ClaimInfo
	var pricing bool
	err := db.Pool.QueryRow(ctx, `SELECT p.name, p.id, org.name, org.slug, coalesce(s.email, c.email), s.invitation_token_expires_at,
			org.seat_based_pricing
		FROM seats s
		LEFT JOIN subscriptions sub ON sub.id = s.subscription_id
		LEFT JOIN orders o ON o.id = s.order_id
		JOIN products p ON p.id = coalesce(sub.product_id, o.product_id)
		JOIN organizations org ON org.id = p.organization_id
		LEFT JOIN customers c ON c.id = s.customer_id
		WHERE s.invitation_token_hash = $1 AND s.status = 'pending' AND s.invitation_token_expires_at > now()`,
		secret.HashToken(token)).Scan(&info.ProductName, &info.ProductID, &info.OrganizationName, &info.OrganizationSlug,
		&info.CustomerEmail, &info.ExpiresAt, &pricing)
	if errors.Is(err, pgx.ErrNoRows) {
		return ClaimInfo{}, events.Errorf(events.CodeNotFound, "Invalid or expired invitation token")
	}
	if err == nil && !pricing {
		return ClaimInfo{}, errSeatPricingDisabled
	}
	info.CanClaim = err == nil
	info.ExpiresAt = info.ExpiresAt.UTC()
	return info, err
}

// Seat reads one seat, unscoped (for operators).
func (db *DB) Seat(ctx context.Context, id string) (events.CustomerSeat, error) {
	if _, ok := events.ParseUUID(id); !ok {
		return events.CustomerSeat{}, events.Errorf(events.CodeNotFound, "Seat not found")
	}
	r, err := scanSeat(db.Pool.QueryRow(ctx, "SELECT "+seatColumns+seatFrom+"WHERE s.id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return events.CustomerSeat{}, events.Errorf(events.CodeNotFound, "Seat not found")
	}
	return r.seat, err
}

// PoolOwner returns the customer who owns a subscription or order.
func (db *DB) PoolOwner(ctx context.Context, subscriptionID, orderID string) (string, error) {
	table, id := "subscriptions", subscriptionID
	if orderID != "" {
		table, id = "orders", orderID
	}
	if _, ok := events.ParseUUID(id); !ok {
		return "", events.Errorf(events.CodeInvalid, "%q is not a UUID", id)
	}
	var owner string
	err := db.Pool.QueryRow(ctx, `SELECT customer_id FROM `+table+` WHERE id = $1`, id).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", events.Errorf(events.CodeNotFound, "%s %s not found", table[:len(table)-1], id)
	}
	return owner, err
}
