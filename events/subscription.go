package events

import "time"

// Recurring intervals of products and subscriptions, as Polar names them.
var RecurringIntervals = []string{"day", "week", "month", "year"}

// CustomerSubscription is Polar's CustomerSubscription as seatd answers it
// (GET /v1/customer-portal/seats/subscriptions): every property of the
// SDK's type is present. seatd is a seat service, not a billing system, so
// what it does not know is null or empty (never invented), the current
// period is derived from the start and the interval (see BillingPeriod),
// and Amount and Currency are what the operator recorded.
type CustomerSubscription struct {
	CreatedAt                   time.Time                   `json:"created_at"`
	ModifiedAt                  *time.Time                  `json:"modified_at"`
	ID                          string                      `json:"id"`
	Amount                      int                         `json:"amount"`
	Currency                    string                      `json:"currency"`
	RecurringInterval           string                      `json:"recurring_interval"`
	RecurringIntervalCount      int                         `json:"recurring_interval_count"`
	Status                      string                      `json:"status"`
	CurrentPeriodStart          time.Time                   `json:"current_period_start"`
	CurrentPeriodEnd            time.Time                   `json:"current_period_end"`
	CurrentMeterPeriodStart     unknown                     `json:"current_meter_period_start"`
	CurrentMeterPeriodEnd       unknown                     `json:"current_meter_period_end"`
	TrialStart                  unknown                     `json:"trial_start"`
	TrialEnd                    unknown                     `json:"trial_end"`
	CancelAtPeriodEnd           bool                        `json:"cancel_at_period_end"`
	CanceledAt                  *time.Time                  `json:"canceled_at"`
	StartedAt                   *time.Time                  `json:"started_at"`
	EndsAt                      *time.Time                  `json:"ends_at"`
	EndedAt                     *time.Time                  `json:"ended_at"`
	PastDueAt                   unknown                     `json:"past_due_at"`
	PauseAtPeriodEnd            bool                        `json:"pause_at_period_end"`
	PausedAt                    unknown                     `json:"paused_at"`
	ResumesAt                   unknown                     `json:"resumes_at"`
	CustomerID                  string                      `json:"customer_id"`
	ProductID                   string                      `json:"product_id"`
	DiscountID                  unknown                     `json:"discount_id"`
	CheckoutID                  *string                     `json:"checkout_id"`
	Seats                       int                         `json:"seats"`
	Units                       unknown                     `json:"units"`
	CustomerCancellationReason  unknown                     `json:"customer_cancellation_reason"`
	CustomerCancellationComment unknown                     `json:"customer_cancellation_comment"`
	Product                     CustomerSubscriptionProduct `json:"product"`
	Prices                      noItems                     `json:"prices"`
	Meters                      noItems                     `json:"meters"`
	PendingUpdate               unknown                     `json:"pending_update"`
}

// CustomerSubscriptionProduct is Polar's CustomerSubscriptionProduct.
// seatd keeps no prices, benefits or media, and no trial or meter cycle.
type CustomerSubscriptionProduct struct {
	ID                     string               `json:"id"`
	CreatedAt              time.Time            `json:"created_at"`
	ModifiedAt             *time.Time           `json:"modified_at"`
	TrialInterval          unknown              `json:"trial_interval"`
	TrialIntervalCount     unknown              `json:"trial_interval_count"`
	Name                   string               `json:"name"`
	Description            *string              `json:"description"`
	Visibility             string               `json:"visibility"`
	RecurringInterval      *string              `json:"recurring_interval"`
	RecurringIntervalCount *int                 `json:"recurring_interval_count"`
	MeterInterval          unknown              `json:"meter_interval"`
	MeterIntervalCount     unknown              `json:"meter_interval_count"`
	IsRecurring            bool                 `json:"is_recurring"`
	IsArchived             bool                 `json:"is_archived"`
	OrganizationID         string               `json:"organization_id"`
	Prices                 noItems              `json:"prices"`
	Benefits               noItems              `json:"benefits"`
	Medias                 noItems              `json:"medias"`
	Organization           CustomerOrganization `json:"organization"`
}

// CustomerOrganization is Polar's CustomerOrganization. seatd's customer
// portal changes no subscription (no seat or plan updates, no pausing, no
// email changes), so every customer portal setting is false; proration is
// Polar's default.
type CustomerOrganization struct {
	CreatedAt              time.Time              `json:"created_at"`
	ModifiedAt             *time.Time             `json:"modified_at"`
	ID                     string                 `json:"id"`
	Name                   string                 `json:"name"`
	Slug                   string                 `json:"slug"`
	AvatarURL              unknown                `json:"avatar_url"`
	ProrationBehavior      string                 `json:"proration_behavior"`
	AllowCustomerUpdates   bool                   `json:"allow_customer_updates"`
	CustomerPortalSettings CustomerPortalSettings `json:"customer_portal_settings"`
	OrganizationFeatures   OrganizationFeatures   `json:"organization_features"`
}

// CustomerPortalSettings is Polar's OrganizationCustomerPortalSettings.
type CustomerPortalSettings struct {
	Usage struct {
		Show bool `json:"show"`
	} `json:"usage"`
	Subscription struct {
		UpdateSeats bool `json:"update_seats"`
		UpdatePlan  bool `json:"update_plan"`
		UpdateUnits bool `json:"update_units"`
		Pause       bool `json:"pause"`
	} `json:"subscription"`
	Customer struct {
		AllowEmailChange bool `json:"allow_email_change"`
	} `json:"customer"`
}

// OrganizationFeatures is Polar's CustomerOrganizationFeatureSettings.
type OrganizationFeatures struct {
	MemberModelEnabled          bool `json:"member_model_enabled"`
	CheckoutLocalizationEnabled bool `json:"checkout_localization_enabled"`
}

// unknown is a property seatd has no value for: always null.
type unknown struct{}

func (unknown) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// noItems is a list seatd has nothing to put in: always [].
type noItems struct{}

func (noItems) MarshalJSON() ([]byte, error) { return []byte("[]"), nil }

// BillingPeriod is the billing period that contains at, for a
// subscription started at start that renews every count intervals:
// periods follow each other from start, and a month that has no such day
// ends on its last day (a subscription started on 31 January renews on 28
// or 29 February, then on 31 March). Before start it is the first period.
func BillingPeriod(start time.Time, interval string, count int, at time.Time) (time.Time, time.Time) {
	count = max(count, 1)
	next := func(k int) time.Time { return addIntervals(start, interval, k*count) }
	// An estimate from the average length, corrected by stepping.
	k := 0
	if at.After(start) {
		avg := next(1).Sub(start)
		k = int(at.Sub(start) / avg)
	}
	for k > 0 && next(k).After(at) {
		k--
	}
	for !next(k + 1).After(at) {
		k++
	}
	return next(k), next(k + 1)
}

// addIntervals adds n intervals to t, months keeping t's day of the month
// where the month has it and its last day otherwise.
func addIntervals(t time.Time, interval string, n int) time.Time {
	switch interval {
	case "day":
		return t.AddDate(0, 0, n)
	case "week":
		return t.AddDate(0, 0, 7*n)
	case "year":
		n *= 12
	}
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(n), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	last := first.AddDate(0, 1, -1).Day()
	return first.AddDate(0, 0, min(d, last)-1)
}
