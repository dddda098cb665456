package storage

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/secret"
)

// Provisioning: the operator's side of the product (seatctl). Each function
// validates its input and returns an *events.Error with CodeInvalid or
// CodeNotFound for bad input, so the CLI can say what is wrong.

var slugJunk = regexp.MustCompile(`[^a-z0-9]+`)

// CreateOrganization creates an organization.
func (db *DB) CreateOrganization(ctx context.Context, name string, seatPricing, memberModel bool) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", events.Errorf(events.CodeInvalid, "organization name must not be empty")
	}
	if err := plainText("organization name", name); err != nil {
		return "", err
	}
	id := uuid.NewString()
	slug := strings.Trim(slugJunk.ReplaceAllString(strings.ToLower(name), "-"), "-") + "-" + id[:8]
	_, err := db.Pool.Exec(ctx, `INSERT INTO organizations (id, name, slug, seat_based_pricing, member_model)
		VALUES ($1, $2, $3, $4, $5)`, id, name, slug, seatPricing, memberModel)
	return id, err
}

// CreateCustomer creates a customer of an organization.
func (db *DB) CreateCustomer(ctx context.Context, orgID, email, externalID string) (string, error) {
	if _, ok := events.ParseUUID(orgID); !ok {
		return "", events.Errorf(events.CodeInvalid, "organization id %q is not a UUID", orgID)
	}
	addr, msg := events.ParseEmail(email)
	if msg != "" {
		return "", events.Errorf(events.CodeInvalid, "invalid email %q: %s", email, msg)
	}
	var ext *string
	if externalID != "" {
		if err := plainText("external id", externalID); err != nil {
			return "", err
		}
		ext = &externalID
	}
	id := uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO customers (id, organization_id, email, email_key, external_id) VALUES ($1, $2, $3, $4, $5)`,
		id, orgID, addr.Display, addr.Key, ext)
	return id, provisionErr(err, "organization")
}

// CreateMember creates a member of a customer.
func (db *DB) CreateMember(ctx context.Context, customerID, email, role string) (string, error) {
	if _, ok := events.ParseUUID(customerID); !ok {
		return "", events.Errorf(events.CodeInvalid, "customer id %q is not a UUID", customerID)
	}
	switch role {
	case "":
		role = "member"
	case "owner", "billing_manager", "member":
	default:
		return "", events.Errorf(events.CodeInvalid, "role must be owner, billing_manager or member")
	}
	addr, msg := events.ParseEmail(email)
	if msg != "" {
		return "", events.Errorf(events.CodeInvalid, "invalid email %q: %s", email, msg)
	}
	id := uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO members (id, customer_id, email, email_key, role) VALUES ($1, $2, $3, $4, $5)`,
		id, customerID, addr.Display, addr.Key, role)
	return id, provisionErr(err, "customer")
}

// CreatePool creates a subscription (kind "subscription", status active or
// canceled) or an order (kind "order", status paid or pending).
func (db *DB) CreatePool(ctx context.Context, kind, customerID, product string, seats int, status string) (string, error) {
	table, statuses := "subscriptions", []string{"active", "canceled"}
	if kind == "order" {
		table, statuses = "orders", []string{"paid", "pending"}
	}
	if status == "" {
		status = statuses[0]
	}
	if status != statuses[0] && status != statuses[1] {
		return "", events.Errorf(events.CodeInvalid, "%s status must be %s or %s", kind, statuses[0], statuses[1])
	}
	if seats < 0 {
		return "", events.Errorf(events.CodeInvalid, "seats must not be negative")
	}
	if _, ok := events.ParseUUID(customerID); !ok {
		return "", events.Errorf(events.CodeInvalid, "customer id %q is not a UUID", customerID)
	}
	if strings.TrimSpace(product) == "" {
		product = "Seats"
	}
	if err := plainText("product name", product); err != nil {
		return "", err
	}
	id := uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO `+table+` (id, customer_id, product_name, seats, status) VALUES ($1, $2, $3, $4, $5)`,
		id, customerID, product, seats, status)
	return id, provisionErr(err, "customer")
}

// SetSubscriptionSeats changes a subscription's seat count. Lowering it
// below the seats in use is refused (the capacity CHECK would refuse it too,
// but with a less helpful message).
func (db *DB) SetSubscriptionSeats(ctx context.Context, subID string, seats int) error {
	if _, ok := events.ParseUUID(subID); !ok {
		return events.Errorf(events.CodeInvalid, "subscription id %q is not a UUID", subID)
	}
	if seats < 0 {
		return events.Errorf(events.CodeInvalid, "seats must not be negative")
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var used int
		err := tx.QueryRow(ctx, `SELECT seats_used FROM subscriptions WHERE id = $1 FOR UPDATE`, subID).Scan(&used)
		if errors.Is(err, pgx.ErrNoRows) {
			return events.Errorf(events.CodeNotFound, "subscription %s not found", subID)
		}
		if err != nil {
			return err
		}
		if seats < used {
			return events.Errorf(events.CodeInvalid, "cannot set seats to %d: %d seats are in use (pending or claimed); revoke some first", seats, used)
		}
		_, err = tx.Exec(ctx, `UPDATE subscriptions SET seats = $2 WHERE id = $1`, subID, seats)
		return err
	})
}

// CreateCheckout creates a checkout that resolves to a subscription or an
// order, owned by the same customer.
func (db *DB) CreateCheckout(ctx context.Context, subID, orderID string) (string, error) {
	if (subID == "") == (orderID == "") {
		return "", events.Errorf(events.CodeInvalid, "a checkout resolves to exactly one subscription or order")
	}
	customerID, err := db.PoolOwner(ctx, subID, orderID)
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	var sub, ord *string
	if subID != "" {
		sub = &subID
	} else {
		ord = &orderID
	}
	_, err = db.Pool.Exec(ctx, `INSERT INTO checkouts (id, customer_id, subscription_id, order_id) VALUES ($1, $2, $3, $4)`,
		id, customerID, sub, ord)
	return id, err
}

// CreateSession creates a customer session (memberID empty) or a member
// session and returns its token, which is shown once and never stored.
func (db *DB) CreateSession(ctx context.Context, customerID, memberID string, scopes []string, ttl time.Duration) (string, time.Time, error) {
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	if ttl <= 0 {
		return "", time.Time{}, events.Errorf(events.CodeInvalid, "ttl must be positive")
	}
	if memberID != "" {
		if _, ok := events.ParseUUID(memberID); !ok {
			return "", time.Time{}, events.Errorf(events.CodeInvalid, "member id %q is not a UUID", memberID)
		}
		err := db.Pool.QueryRow(ctx, `SELECT customer_id FROM members WHERE id = $1`, memberID).Scan(&customerID)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", time.Time{}, events.Errorf(events.CodeNotFound, "member %s not found", memberID)
		}
		if err != nil {
			return "", time.Time{}, err
		}
	} else if _, ok := events.ParseUUID(customerID); !ok {
		return "", time.Time{}, events.Errorf(events.CodeInvalid, "customer id %q is not a UUID", customerID)
	}
	var member *string
	if memberID != "" {
		member = &memberID
	}
	token := secret.NewRandomToken()
	expires := time.Now().Add(ttl).UTC().Truncate(time.Microsecond)
	_, err := db.Pool.Exec(ctx, `INSERT INTO sessions (id, token_hash, customer_id, member_id, scopes, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, uuid.NewString(), secret.HashToken(token), customerID, member, scopes, expires)
	if err != nil {
		return "", time.Time{}, provisionErr(err, "customer")
	}
	return token, expires, nil
}

// plainText refuses names that would break the lines they are shown on
// (an email subject, a page title): control characters such as CR and LF,
// invalid UTF-8, more than 255 bytes.
func plainText(what, s string) error {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) || len(s) > 255 {
		return events.Errorf(events.CodeInvalid, "invalid %s %q: at most 255 characters of text, no control characters", what, s)
	}
	return nil
}

func provisionErr(err error, parent string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23503":
			return events.Errorf(events.CodeNotFound, "%s not found", parent)
		case "23505":
			return events.Errorf(events.CodeConflict, "already exists: %s", pgErr.Detail)
		}
	}
	return err
}
