package events

import (
	"testing"
	"time"
)

// TestBillingPeriod: periods follow each other from the start, a month
// without the start's day ends on its last day (and the next period
// returns to the start's day), and before the start it is the first period.
func TestBillingPeriod(t *testing.T) {
	d := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	jan31 := d("2025-01-31T10:00:00Z")
	for _, c := range []struct {
		name              string
		start             time.Time
		interval          string
		count             int
		at                time.Time
		wantStart, wantTo string
	}{
		{"first month", jan31, "month", 1, d("2025-02-10T00:00:00Z"), "2025-01-31T10:00:00Z", "2025-02-28T10:00:00Z"},
		{"short month", jan31, "month", 1, d("2025-03-01T00:00:00Z"), "2025-02-28T10:00:00Z", "2025-03-31T10:00:00Z"},
		{"back to the 31st", jan31, "month", 1, d("2025-04-15T00:00:00Z"), "2025-03-31T10:00:00Z", "2025-04-30T10:00:00Z"},
		{"leap year", jan31, "month", 1, d("2028-02-29T11:00:00Z"), "2028-02-29T10:00:00Z", "2028-03-31T10:00:00Z"},
		{"on the boundary", jan31, "month", 1, d("2025-02-28T10:00:00Z"), "2025-02-28T10:00:00Z", "2025-03-31T10:00:00Z"},
		{"every 3 months", jan31, "month", 3, d("2025-06-01T00:00:00Z"), "2025-04-30T10:00:00Z", "2025-07-31T10:00:00Z"},
		{"yearly from 29 February", d("2024-02-29T00:00:00Z"), "year", 1, d("2026-06-01T00:00:00Z"), "2026-02-28T00:00:00Z", "2027-02-28T00:00:00Z"},
		{"weekly", jan31, "week", 2, d("2025-02-20T00:00:00Z"), "2025-02-14T10:00:00Z", "2025-02-28T10:00:00Z"},
		{"daily, years later", jan31, "day", 1, d("2030-07-04T09:00:00Z"), "2030-07-03T10:00:00Z", "2030-07-04T10:00:00Z"},
		{"before the start", jan31, "month", 1, d("2024-12-01T00:00:00Z"), "2025-01-31T10:00:00Z", "2025-02-28T10:00:00Z"},
	} {
		from, to := BillingPeriod(c.start, c.interval, c.count, c.at)
		if from.Format(time.RFC3339) != c.wantStart || to.Format(time.RFC3339) != c.wantTo {
			t.Errorf("%s: %s – %s, want %s – %s", c.name, from.Format(time.RFC3339), to.Format(time.RFC3339), c.wantStart, c.wantTo)
		}
	}
}
