package events

import (
	"bytes"
	"encoding/json"
	"time"
)

// SeatStatus is the life-cycle state of a seat.
type SeatStatus string

const (
	SeatPending SeatStatus = "pending"
	SeatClaimed SeatStatus = "claimed"
	SeatRevoked SeatStatus = "revoked"
)

// SeatAssign is the body of POST /v1/customer-portal/seats after decoding
// and validation: exactly one container id is set, the recipient fields
// combine as Polar's validators allow (see validateRecipient), ids are
// canonical lower-case UUIDs.
type SeatAssign struct {
	SubscriptionID     string          `json:"subscription_id,omitempty"`
	CheckoutID         string          `json:"checkout_id,omitempty"`
	OrderID            string          `json:"order_id,omitempty"`
	Email              string          `json:"email,omitempty"`
	ExternalCustomerID string          `json:"external_customer_id,omitempty"`
	CustomerID         string          `json:"customer_id,omitempty"`
	ExternalMemberID   string          `json:"external_member_id,omitempty"`
	MemberID           string          `json:"member_id,omitempty"`
	Metadata           json.RawMessage `json:"metadata,omitempty"`
	ImmediateClaim     bool            `json:"immediate_claim,omitempty"`
}

// NamesMember reports whether the assign names its occupant by member id
// or external member id, which makes it a member-model assign even in an
// organization without the member model, as in Polar.
func (a SeatAssign) NamesMember() bool { return a.MemberID != "" || a.ExternalMemberID != "" }

// Member is a member of a customer, as Polar's Member schema: every
// property always present, null where absent.
type Member struct {
	ID         string     `json:"id"`
	CreatedAt  time.Time  `json:"created_at"`
	ModifiedAt *time.Time `json:"modified_at"`
	CustomerID string     `json:"customer_id"`
	Email      string     `json:"email"`
	Name       *string    `json:"name"`
	ExternalID *string    `json:"external_id"`
	Role       string     `json:"role"`
}

// CustomerSeat is the API's view of a seat. Every property of the schema is
// always present, null where absent.
type CustomerSeat struct {
	CreatedAt                time.Time       `json:"created_at"`
	ModifiedAt               *time.Time      `json:"modified_at"`
	ID                       string          `json:"id"`
	SubscriptionID           *string         `json:"subscription_id"`
	OrderID                  *string         `json:"order_id"`
	Status                   SeatStatus      `json:"status"`
	CustomerID               *string         `json:"customer_id"`
	MemberID                 *string         `json:"member_id"`
	Member                   *Member         `json:"member"`
	Email                    *string         `json:"email"`
	CustomerEmail            *string         `json:"customer_email"`
	InvitationTokenExpiresAt *time.Time      `json:"invitation_token_expires_at"`
	ClaimedAt                *time.Time      `json:"claimed_at"`
	RevokedAt                *time.Time      `json:"revoked_at"`
	SeatMetadata             json.RawMessage `json:"seat_metadata"`
}

// MarshalJSON writes an unset seat_metadata as {}, as Polar answers.
func (s CustomerSeat) MarshalJSON() ([]byte, error) {
	type plain CustomerSeat
	p := plain(s)
	if len(p.SeatMetadata) == 0 {
		p.SeatMetadata = json.RawMessage("{}")
	}
	return json.Marshal(p)
}

// UnmarshalJSON reads "no metadata" (null, or the {} MarshalJSON writes)
// as unset, so a seat read back from the ledger equals the seat written.
func (s *CustomerSeat) UnmarshalJSON(b []byte) error {
	type plain CustomerSeat
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if m := string(bytes.TrimSpace(p.SeatMetadata)); m == "null" || m == "{}" {
		p.SeatMetadata = nil
	}
	*s = CustomerSeat(p)
	return nil
}
