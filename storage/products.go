package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
)

// Product is what a subscription or an order is for.
type Product struct {
	ID                     string     `json:"id"`
	OrganizationID         string     `json:"organization_id"`
	Name                   string     `json:"name"`
	Description            *string    `json:"description"`
	RecurringInterval      *string    `json:"recurring_interval"` // null: a one-time product
	RecurringIntervalCount *int       `json:"recurring_interval_count"`
	CreatedAt              time.Time  `json:"created_at"`
	ModifiedAt             *time.Time `json:"modified_at"`
}

// ProductSpec describes a product to create.
type ProductSpec struct {
	OrganizationID string
	Name           string
	Description    string // optional
	// RecurringInterval is day, week, month or year for a product sold by
	// subscription, every RecurringIntervalCount (default 1) of them; ""
	// for a one-time product.
	RecurringInterval      string
	RecurringIntervalCount int
}

const productColumns = `id, organization_id, name, description, recurring_interval, recurring_interval_count, created_at, modified_at`

func scanProduct(row pgx.Row) (Product, error) {
	var p Product
	err := row.Scan(&p.ID, &p.OrganizationID, &p.Name, &p.Description, &p.RecurringInterval, &p.RecurringIntervalCount,
		&p.CreatedAt, &p.ModifiedAt)
	if err != nil {
		return Product{}, err
	}
	utc(&p.CreatedAt)
	if p.ModifiedAt != nil {
		utc(p.ModifiedAt)
	}
	return p, nil
}

// CreateProduct creates a product of an organization. Its name is plain
// text and never a UUID, so a product reference (FindProduct) is never
// ambiguous between an id and a name.
func (db *DB) CreateProduct(ctx context.Context, p ProductSpec) (Product, error) {
	if _, ok := events.ParseUUID(p.OrganizationID); !ok {
		return Product{}, events.Errorf(events.CodeInvalid, "organization id %q is not a UUID", p.OrganizationID)
	}
	p.Name = strings.TrimSpace(p.Name)
	if p.Name == "" {
		return Product{}, events.Errorf(events.CodeInvalid, "product name must not be empty")
	}
	if err := plainText("product name", p.Name); err != nil {
		return Product{}, err
	}
	if _, isID := events.ParseUUID(p.Name); isID {
		return Product{}, events.Errorf(events.CodeInvalid, "product name %q looks like an id; choose a name", p.Name)
	}
	desc, err := optionalText("product description", p.Description)
	if err != nil {
		return Product{}, err
	}
	var interval *string
	var count *int
	switch {
	case p.RecurringInterval == "":
		if p.RecurringIntervalCount != 0 {
			return Product{}, events.Errorf(events.CodeInvalid, "a one-time product has no interval count")
		}
	case !slices.Contains(events.RecurringIntervals, p.RecurringInterval):
		return Product{}, events.Errorf(events.CodeInvalid, "interval %q must be one of %s", p.RecurringInterval,
			strings.Join(events.RecurringIntervals, ", "))
	case p.RecurringIntervalCount < 0:
		return Product{}, events.Errorf(events.CodeInvalid, "interval count must be positive")
	default:
		interval, count = &p.RecurringInterval, ptr(max(p.RecurringIntervalCount, 1))
	}
	row := db.Pool.QueryRow(ctx, `INSERT INTO products (id, organization_id, name, description, recurring_interval, recurring_interval_count)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+productColumns, uuid.NewString(), p.OrganizationID, p.Name, desc, interval, count)
	prod, err := scanProduct(row)
	if err != nil {
		return Product{}, provisionErr(err, "organization")
	}
	return prod, nil
}

// Products lists an organization's products, oldest first.
func (db *DB) Products(ctx context.Context, orgID string) ([]Product, error) {
	if _, ok := events.ParseUUID(orgID); !ok {
		return nil, events.Errorf(events.CodeInvalid, "organization id %q is not a UUID", orgID)
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+productColumns+` FROM products WHERE organization_id = $1
		ORDER BY created_at, id`, orgID)
	if err != nil {
		return nil, fmt.Errorf("products: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Product, error) { return scanProduct(r) })
	if err != nil {
		return nil, fmt.Errorf("products: %w", err)
	}
	if list == nil {
		list = []Product{}
	}
	return list, nil
}

// FindProduct resolves a reference to a product of the customer's
// organization: its id, or the name of exactly one of its products.
func (db *DB) FindProduct(ctx context.Context, customerID, ref string) (string, error) {
	if _, ok := events.ParseUUID(customerID); !ok {
		return "", events.Errorf(events.CodeInvalid, "customer id %q is not a UUID", customerID)
	}
	var org string
	err := db.Pool.QueryRow(ctx, `SELECT organization_id FROM customers WHERE id = $1`, customerID).Scan(&org)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", events.Errorf(events.CodeNotFound, "customer %s not found", customerID)
	}
	if err != nil {
		return "", err
	}
	id, isID := events.ParseUUID(ref)
	query := `SELECT id FROM products WHERE organization_id = $1 AND id = $2::uuid`
	if !isID {
		id, query = ref, `SELECT id FROM products WHERE organization_id = $1 AND name = $2 LIMIT 2`
	}
	rows, err := db.Pool.Query(ctx, query, org, id)
	if err != nil {
		return "", err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	switch {
	case err != nil:
		return "", err
	case len(ids) == 1:
		return ids[0], nil
	case len(ids) > 1:
		return "", events.Errorf(events.CodeInvalid, "more than one product of the organization is named %q: give its id (seatctl product list --org %s)", ref, org)
	case isID:
		return "", events.Errorf(events.CodeNotFound, "product %s is not a product of the customer's organization", ref)
	}
	return "", events.Errorf(events.CodeNotFound, "no product of the customer's organization is named %q: create it with seatctl product create --org %s --name NAME", ref, org)
}
