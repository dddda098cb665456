package storage

import (
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
)

// orgKey is a pair of ids or keys: (organization, key), (customer, email
// key), (pool, holder).
type orgKey struct{ org, key string }

// memberSet is what a set-based batch knows of the purchasers' members:
// the rows it read, and the members earlier requests of the batch created
// or linked to an external id, so each request resolves its member
// exactly as resolveMember would at that point of the serial order.
type memberSet struct {
	byID    map[string]*events.Member
	byEmail map[orgKey]string // (customer, email key) → id
	byExt   map[orgKey]string // (customer, external id) → id
}

func newMemberSet() *memberSet {
	return &memberSet{byID: map[string]*events.Member{}, byEmail: map[orgKey]string{}, byExt: map[orgKey]string{}}
}

// add records m, replacing what was known of it.
func (s *memberSet) add(m events.Member) {
	s.byID[m.ID] = &m
	s.byEmail[orgKey{m.CustomerID, events.EmailKey(m.Email)}] = m.ID
	if m.ExternalID != nil {
		s.byExt[orgKey{m.CustomerID, *m.ExternalID}] = m.ID
	}
}

// scan adds the members of rows of memberColumns.
func (s *memberSet) scan(rows pgx.Rows) error {
	for rows.Next() {
		var ms memberScan
		if err := rows.Scan(ms.dest()...); err != nil {
			return err
		}
		s.add(*ms.member())
	}
	return nil
}

func (s *memberSet) get(customer string, index map[orgKey]string, key string) *events.Member {
	if id, ok := index[orgKey{customer, key}]; ok {
		return s.byID[id]
	}
	return nil
}

// named is the member of customer an assign names by member_id or
// external_member_id, if known.
func (s *memberSet) named(customer string, a *events.SeatAssign) *events.Member {
	switch {
	case a.MemberID != "":
		if m := s.byID[a.MemberID]; m != nil && m.CustomerID == customer {
			return m
		}
	case a.ExternalMemberID != "":
		return s.get(customer, s.byExt, a.ExternalMemberID)
	}
	return nil
}

// memberChange is what resolving a member would write.
type memberChange int

const (
	memberFound   memberChange = iota
	memberCreated              // a new member
	memberLinked               // an existing member takes the external id
)

// resolve decides like resolveMember, without changing the set: it
// returns the member as it would be afterwards, the change to make once
// the request is granted, or Polar's refusal.
func (s *memberSet) resolve(purchaser, email string, a *events.SeatAssign, now time.Time) (events.Member, memberChange, *events.Error) {
	switch {
	case a.MemberID != "":
		m := s.named(purchaser, a)
		if m == nil {
			return events.Member{}, memberFound, memberNotFound(a.MemberID)
		}
		return *m, memberFound, nil
	case a.ExternalMemberID != "":
		if m := s.named(purchaser, a); m != nil {
			if email != "" && events.EmailKey(m.Email) != events.EmailKey(email) {
				return events.Member{}, memberFound, memberEmailMismatch(a.ExternalMemberID, email)
			}
			return *m, memberFound, nil
		}
		if email == "" {
			return events.Member{}, memberFound, memberNotFound(a.ExternalMemberID)
		}
	}
	existing := s.get(purchaser, s.byEmail, events.EmailKey(email))
	if existing == nil {
		m := events.Member{ID: uuid.NewString(), CreatedAt: now, CustomerID: purchaser, Email: email, Role: "member"}
		if a.ExternalMemberID != "" {
			m.ExternalID = &a.ExternalMemberID
		}
		return m, memberCreated, nil
	}
	m := *existing
	switch {
	case a.ExternalMemberID == "":
		return m, memberFound, nil
	case m.ExternalID == nil:
		ext, at := a.ExternalMemberID, now
		m.ExternalID, m.ModifiedAt = &ext, &at
		return m, memberLinked, nil
	case *m.ExternalID != a.ExternalMemberID:
		return events.Member{}, memberFound, memberEmailMismatch(a.ExternalMemberID, email)
	}
	return m, memberFound, nil
}
