package storage

import (
	"context"
	"errors"
	"fmt"
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

// SetSeatPricing turns an organization's seat-based pricing on or off.
// Off, its pools refuse list, assign, resend, revoke, claim and claim info
// with 403 FeatureNotEnabled (as Polar); its seats, invitations and links
// are kept, and work again once it is back on.
func (db *DB) SetSeatPricing(ctx context.Context, orgID string, on bool) error {
	return db.setOrganization(ctx, orgID, "seat_based_pricing", on)
}

// setOrganization sets one column of an organization, named by the caller
// (never by input), reporting a malformed or unknown id as such.
func (db *DB) setOrganization(ctx context.Context, orgID, column string, value any) error {
	if _, ok := events.ParseUUID(orgID); !ok {
		return events.Errorf(events.CodeInvalid, "organization id %q is not a UUID", orgID)
	}
	tag, err := db.Pool.Exec(ctx, `UPDATE organizations SET `+column+` = $2 WHERE id = $1`, orgID, value)
	if err != nil {
		return fmt.Errorf("set organization %s: %w", column, err)
	}
	if tag.RowsAffected() == 0 {
		return events.Errorf(events.CodeNotFound, "organization %s not found", orgID)
	}
	return nil
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

// MemberSpec describes a member to create.
type MemberSpec struct {
	CustomerID string
	Email      string
	Role       string // owner, billing_manager or member (default)
	Name       string // optional
	ExternalID string // optional; unique within the customer
}

// CreateMember creates a member of a customer.
func (db *DB) CreateMember(ctx context.Context, m MemberSpec) (string, error) {
	if _, ok := events.ParseUUID(m.CustomerID); !ok {
		return "", events.Errorf(events.CodeInvalid, "customer id %q is not a UUID", m.CustomerID)
	}
	switch m.Role {
	case "":
		m.Role = "member"
	case "owner", "billing_manager", "member":
	default:
		return "", events.Errorf(events.CodeInvalid, "role must be owner, billing_manager or member")
	}
	addr, msg := events.ParseEmail(m.Email)
	if msg != "" {
		return "", events.Errorf(events.CodeInvalid, "invalid email %q: %s", m.Email, msg)
	}
	name, err := optionalText("member name", m.Name)
	if err != nil {
		return "", err
	}
	ext, err := optionalText("external id", m.ExternalID)
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	_, err = db.Pool.Exec(ctx, `INSERT INTO members (id, customer_id, email, email_key, role, name, external_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, m.CustomerID, addr.Display, addr.Key, m.Role, name, ext)
	return id, provisionErr(err, "customer")
}

// optionalText is nil for "" and otherwise s, checked by plainText.
func optionalText(what, s string) (*string, error) {
	if s == "" {
		return nil, nil
	}
	if err := plainText(what, s); err != nil {
		return nil, err
	}
	return &s, nil
}

// PoolSpec describes a subscription or an order to create.
type PoolSpec struct {
	Kind       string // "subscription" or "order"
	CustomerID string // the purchaser
	ProductID  string // a product of the purchaser's organization; a subscription's must be recurring
	Seats      int
	Status     string // subscription: active (default) or canceled; order: paid (default) or pending

	// A subscription's record, as Polar's clients read it. It renews every
	// interval of its product, counted from StartedAt (default now).
	Amount    int    // in the currency's smallest unit; default 0
	Currency  string // three letters; default usd
	StartedAt time.Time
}

var currencyRE = regexp.MustCompile(`^[a-z]{3}$`)

// CreatePool creates a subscription or an order of a product.
func (db *DB) CreatePool(ctx context.Context, p PoolSpec) (string, error) {
	table, statuses := "subscriptions", []string{"active", "canceled"}
	switch p.Kind {
	case "order":
		table, statuses = "orders", []string{"paid", "pending"}
	case "subscription":
	default:
		return "", events.Errorf(events.CodeInvalid, "a pool is a subscription or an order, not %q", p.Kind)
	}
	if p.Status == "" {
		p.Status = statuses[0]
	}
	if p.Status != statuses[0] && p.Status != statuses[1] {
		return "", events.Errorf(events.CodeInvalid, "%s status must be %s or %s", p.Kind, statuses[0], statuses[1])
	}
	if p.Seats < 0 {
		return "", events.Errorf(events.CodeInvalid, "seats must not be negative")
	}
	if _, ok := events.ParseUUID(p.CustomerID); !ok {
		return "", events.Errorf(events.CodeInvalid, "customer id %q is not a UUID", p.CustomerID)
	}
	if _, ok := events.ParseUUID(p.ProductID); !ok {
		return "", events.Errorf(events.CodeInvalid, "product id %q is not a UUID", p.ProductID)
	}
	p.Currency = strings.ToLower(p.Currency)
	if p.Kind == "order" && (p.Amount != 0 || p.Currency != "" || !p.StartedAt.IsZero()) {
		return "", events.Errorf(events.CodeInvalid, "amount, currency and start are a subscription's, not an order's")
	}
	if p.Amount < 0 {
		return "", events.Errorf(events.CodeInvalid, "amount must not be negative")
	}
	if p.Currency == "" {
		p.Currency = "usd"
	}
	if !currencyRE.MatchString(p.Currency) {
		return "", events.Errorf(events.CodeInvalid, "currency %q must be a three-letter code such as usd", p.Currency)
	}
	if p.StartedAt.IsZero() {
		p.StartedAt = time.Now()
	}
	id := uuid.NewString()
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var interval *string
		var count *int
		err := tx.QueryRow(ctx, `SELECT p.recurring_interval, p.recurring_interval_count FROM products p
			JOIN customers c ON c.organization_id = p.organization_id WHERE p.id = $1 AND c.id = $2`,
			p.ProductID, p.CustomerID).Scan(&interval, &count)
		if errors.Is(err, pgx.ErrNoRows) {
			return events.Errorf(events.CodeNotFound, "customer %s not found, or product %s is not its organization's", p.CustomerID, p.ProductID)
		}
		if err != nil {
			return err
		}
		if table == "orders" {
			_, err = tx.Exec(ctx, `INSERT INTO orders (id, customer_id, product_id, seats, status) VALUES ($1, $2, $3, $4, $5)`,
				id, p.CustomerID, p.ProductID, p.Seats, p.Status)
			return err
		}
		if interval == nil {
			return events.Errorf(events.CodeInvalid, "product %s is a one-time product: a subscription needs a recurring one", p.ProductID)
		}
		// A subscription recorded as canceled ended when it was recorded.
		_, err = tx.Exec(ctx, `INSERT INTO subscriptions (id, customer_id, product_id, seats, status, amount, currency,
				recurring_interval, recurring_interval_count, started_at, canceled_at, ended_at)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, e.at, e.at
			FROM (SELECT CASE WHEN $5 = 'canceled' THEN now() END AS at) e`,
			id, p.CustomerID, p.ProductID, p.Seats, p.Status, p.Amount, p.Currency, *interval, *count, p.StartedAt)
		return err
	})
	if err != nil {
		return "", err
	}
	return id, nil
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
		_, err = tx.Exec(ctx, `UPDATE subscriptions SET seats = $2, modified_at = now() WHERE id = $1`, subID, seats)
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
