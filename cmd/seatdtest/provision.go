package seatdtest

import (
	"context"
	"time"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/storagetest"
)

// Tenant is an organization with one customer who bought seats.
type Tenant struct {
	OrgID          string
	CustomerID     string
	CustomerEmail  string
	Token          string // customer session with read and write scopes
	ProductID      string // the subscription's product
	SubscriptionID string
}

// TenantOptions shape a Tenant.
type TenantOptions struct {
	Seats       int // subscription seats; default 5
	NoPricing   bool
	MemberModel bool
	Product     string // the product's name; default "Seats"
}

// Tenant provisions an organization, a customer, a subscription and a
// customer session.
func (e *Env) Tenant(opts TenantOptions) Tenant {
	e.T.Helper()
	ctx := context.Background()
	if opts.Seats == 0 {
		opts.Seats = 5
	}
	var t Tenant
	var err error
	must := func(err error) {
		e.T.Helper()
		if err != nil {
			e.T.Fatal(err)
		}
	}
	t.OrgID, err = e.DB.CreateOrganization(ctx, "Acme", !opts.NoPricing, opts.MemberModel)
	must(err)
	t.CustomerEmail = "buyer-" + t.OrgID[:8] + "@example.com"
	t.CustomerID, err = e.DB.CreateCustomer(ctx, t.OrgID, t.CustomerEmail, "")
	must(err)
	if opts.Product == "" {
		opts.Product = "Seats"
	}
	prod, err := e.DB.CreateProduct(ctx, storage.ProductSpec{OrganizationID: t.OrgID, Name: opts.Product, RecurringInterval: "month"})
	must(err)
	t.ProductID = prod.ID
	t.SubscriptionID, err = e.DB.CreatePool(ctx, storage.PoolSpec{Kind: "subscription", CustomerID: t.CustomerID,
		ProductID: prod.ID, Seats: opts.Seats})
	must(err)
	t.Token = e.Session(t.CustomerID, "")
	return t
}

// SetSeatPricing turns an organization's seat-based pricing on or off, as
// when an organization stops selling seats after some were assigned.
func (e *Env) SetSeatPricing(orgID string, on bool) {
	e.T.Helper()
	if err := e.DB.SetSeatPricing(context.Background(), orgID, on); err != nil {
		e.T.Fatal(err)
	}
}

// Pool provisions another subscription or order (kind) of the customer,
// of a new product (see storagetest.Pool).
func (e *Env) Pool(kind, customerID, product string, seats int, status string) string {
	e.T.Helper()
	return storagetest.Pool(e.T, e.DB, kind, customerID, product, seats, status)
}

// Session creates a session (customer, or member when memberID is set)
// with the given scopes (default read and write).
func (e *Env) Session(customerID, memberID string, scopes ...string) string {
	e.T.Helper()
	tok, _, err := e.DB.CreateSession(context.Background(), customerID, memberID, scopes, time.Hour)
	if err != nil {
		e.T.Fatal(err)
	}
	return tok
}

// OrgToken creates an organization access token with the given scopes
// (default customer_seats:read and customer_seats:write) that never
// expires.
func (e *Env) OrgToken(orgID string, scopes ...string) string {
	e.T.Helper()
	if len(scopes) == 0 {
		scopes = storage.OrgScopes
	}
	tok, _, err := e.DB.CreateOrgToken(context.Background(), e.Keys, orgID, scopes, 0, "")
	if err != nil {
		e.T.Fatal(err)
	}
	return tok
}

// Must returns v, or panics on err (which fails the test).
func Must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
