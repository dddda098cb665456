package seatdtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// recorder keeps the errors a check reports instead of failing the test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckSDKShapeFindsWhatIsMissing: the check reads the SDK's types, so
// it catches a property missing at the top and one missing inside a nested
// SDK type, and passes an object that has them all.
func TestCheckSDKShapeFindsWhatIsMissing(t *testing.T) {
	complete := `{"created_at":"x","modified_at":null,"id":"s","subscription_id":null,"order_id":null,"status":"claimed",
		"customer_id":null,"member_id":"m","email":null,"customer_email":null,"invitation_token_expires_at":null,
		"claimed_at":null,"revoked_at":null,"seat_metadata":{},
		"member":{"id":"m","created_at":"x","modified_at":null,"customer_id":"c","email":"e","name":null,"external_id":null,"role":"member"}}`
	for _, c := range []struct {
		name, body string
		want       []string
	}{
		{"complete", complete, nil},
		{"no member", strings.Replace(complete, `"member":{`, `"not_member":{`, 1), []string{"CustomerSeat: no member"}},
		{"member without a role", strings.Replace(complete, `"role":"member"`, `"rank":"member"`, 1), []string{"CustomerSeat.member: no role"}},
	} {
		var v map[string]any
		if err := json.Unmarshal([]byte(c.body), &v); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{TB: t}
		CheckSDKShape(rec, "CustomerSeat", v)
		if len(rec.errs) != len(c.want) {
			t.Errorf("%s: %q, want %q", c.name, rec.errs, c.want)
			continue
		}
		for i, w := range c.want {
			if !strings.HasPrefix(rec.errs[i], w) {
				t.Errorf("%s: %q, want %q", c.name, rec.errs[i], w)
			}
		}
	}
}
