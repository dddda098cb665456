package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/secret"
)

// InvitationState is what became of an invitation link, as the claim page
// tells the invitee.
type InvitationState string

const (
	InvitationReady    InvitationState = "ready"    // live: the button claims it
	InvitationClaimed  InvitationState = "claimed"  // its seat has been claimed
	InvitationExpired  InvitationState = "expired"  // its time ran out before anyone claimed it
	InvitationRevoked  InvitationState = "revoked"  // the seat was taken back
	InvitationReplaced InvitationState = "replaced" // a newer invitation for the same seat was sent
	InvitationUnknown  InvitationState = "unknown"  // no invitation has this token
)

// InvitationView is everything the claim page shows about one link. Only
// State is set for an unknown link.
type InvitationView struct {
	State          InvitationState
	SeatID         string
	Organization   string
	Product        string
	InviterEmail   string // empty when unknown
	InviteeEmail   string // empty once the seat is revoked
	ExpiresAt      time.Time
	ClaimedAt      *time.Time
	ClaimReturnURL string // the organization's; empty when it has none
	// SeatPricing is whether the organization has seat-based pricing on.
	// When it is off a ready link cannot be claimed (the claim answers
	// 403), though it stays ready: it works again once pricing is back on.
	SeatPricing bool
}

// Claimable reports whether a claim of the link would be taken now: it is
// ready and its organization has seat-based pricing on.
func (v InvitationView) Claimable() bool { return v.State == InvitationReady && v.SeatPricing }

// Invitation looks up the invitation a claim link's token belongs to, live
// or not, without changing anything: mail scanners open links.
func (db *DB) Invitation(ctx context.Context, token string) (InvitationView, error) {
	var (
		v                                   InvitationView
		status                              string
		latest, current                     bool
		inviter, invitee, product, org, ret *string
		revokedAt                           *time.Time
	)
	// latest: no newer invitation was made for the seat. current: the seat
	// still points at this invitation (so it is pending on it).
	err := db.Pool.QueryRow(ctx, `SELECT s.id, s.status, s.invitation_id IS NOT DISTINCT FROM i.id,
			NOT EXISTS (SELECT 1 FROM invitations n WHERE n.seat_id = i.seat_id AND n.created_at > i.created_at),
			i.expires_at, s.claimed_at, s.revoked_at, s.inviter_email, coalesce(s.email, c.email),
			prod.name, org.name, org.claim_return_url, coalesce(org.seat_based_pricing, true)
		FROM invitations i
		JOIN seats s ON s.id = i.seat_id
		LEFT JOIN customers c ON c.id = s.customer_id
		LEFT JOIN subscriptions sub ON sub.id = s.subscription_id
		LEFT JOIN orders o ON o.id = s.order_id
		LEFT JOIN products prod ON prod.id = coalesce(sub.product_id, o.product_id)
		LEFT JOIN customers owner ON owner.id = coalesce(sub.customer_id, o.customer_id)
		LEFT JOIN organizations org ON org.id = owner.organization_id
		WHERE i.token_hash = $1`, secret.HashToken(token)).Scan(
		&v.SeatID, &status, &current, &latest, &v.ExpiresAt, &v.ClaimedAt, &revokedAt,
		&inviter, &invitee, &product, &org, &ret, &v.SeatPricing)
	if errors.Is(err, pgx.ErrNoRows) {
		return InvitationView{State: InvitationUnknown}, nil
	}
	if err != nil {
		return InvitationView{}, fmt.Errorf("invitation lookup: %w", err)
	}
	v.InviterEmail, v.InviteeEmail = orEmpty(inviter), orEmpty(invitee)
	v.Product, v.Organization, v.ClaimReturnURL = orEmpty(product), orEmpty(org), orEmpty(ret)
	v.ExpiresAt = v.ExpiresAt.UTC()
	if v.ClaimedAt != nil {
		utc(v.ClaimedAt)
	}
	switch events.SeatStatus(status) {
	case events.SeatClaimed:
		v.State = InvitationClaimed
	case events.SeatRevoked:
		// The expiry sweeper revokes expired seats; to the invitee that
		// link simply expired.
		v.State = InvitationRevoked
		if latest && revokedAt != nil && !revokedAt.Before(v.ExpiresAt) {
			v.State = InvitationExpired
		}
	default: // pending
		switch {
		case !current:
			v.State = InvitationReplaced
		case time.Now().Before(v.ExpiresAt):
			v.State = InvitationReady
		default:
			v.State = InvitationExpired
		}
	}
	return v, nil
}

// SetClaimReturnURL sets (or, with "", clears) where an organization's
// invitees go after claiming a seat. See CheckReturnURL.
func (db *DB) SetClaimReturnURL(ctx context.Context, orgID, returnURL string) error {
	if _, ok := events.ParseUUID(orgID); !ok {
		return events.Errorf(events.CodeInvalid, "organization id %q is not a UUID", orgID)
	}
	if err := CheckReturnURL(returnURL); err != nil {
		return err
	}
	var ret *string
	if returnURL != "" {
		ret = &returnURL
	}
	return db.setOrganization(ctx, orgID, "claim_return_url", ret)
}

// CheckReturnURL accepts "" (none) or an absolute https URL with a host
// and no fragment (the claim adds its own: #customer_session_token=...);
// plain http only for localhost, for development. Anything else would
// send a fresh session token somewhere an eavesdropper could read it.
func CheckReturnURL(s string) error {
	if s == "" {
		return nil
	}
	bad := func(why string) error {
		return events.Errorf(events.CodeInvalid, "claim return URL %q %s", s, why)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || !u.IsAbs() || u.Opaque != "":
		return bad("must be an absolute URL such as https://app.example.com/welcome")
	case len(s) > 2000:
		return bad("is longer than 2000 characters")
	case strings.ContainsAny(s, " \t\r\n\"<>\\"):
		return bad("contains spaces, quotes or control characters")
	case u.Host == "" || u.Hostname() == "":
		return bad("has no host")
	case u.User != nil:
		return bad("must not carry a user name or password")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return bad("must not have a fragment: the session token is added as one")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return bad("must use https (http is allowed only for localhost)")
	default:
		return bad("must use https")
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
