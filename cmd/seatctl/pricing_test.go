package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/seatd/seatd/cmd/seatdtest"
)

// org update --seat-pricing turns an organization's seat-based pricing off
// and on again without SQL: the stored value changes, and the portal then
// refuses an assign with Polar's 403 FeatureNotEnabled, then accepts it. A
// bad value, an unknown organization or a bad return URL beside it change
// nothing.
func TestOrgUpdateSeatPricing(t *testing.T) {
	e := seatdtest.New(t, seatdtest.Options{})
	t.Setenv("DATABASE_URL", e.DBURL)
	t.Setenv("SEATD_DATA_DIR", t.TempDir())
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 5})
	stored := func() bool {
		t.Helper()
		var on bool
		if err := e.DB.Pool.QueryRow(context.Background(), `SELECT seat_based_pricing FROM organizations WHERE id = $1`, ten.OrgID).Scan(&on); err != nil {
			t.Fatal(err)
		}
		return on
	}
	assign := func(email string) (int, string) {
		r := e.Do("POST", "/v1/customer-portal/seats", ten.Token, map[string]any{"subscription_id": ten.SubscriptionID, "email": email})
		var body struct{ Error string }
		_ = json.Unmarshal(r.Body, &body)
		return r.Status, body.Error
	}
	if !stored() {
		t.Fatal("the tenant starts with seat-based pricing off")
	}

	out := mustCtl(t, "org", "update", ten.OrgID, "--seat-pricing=false")
	if out["id"] != ten.OrgID || out["seat_based_pricing"] != false || out["claim_return_url"] != nil {
		t.Errorf("org update --seat-pricing=false printed %v", out)
	}
	if stored() {
		t.Fatal("after --seat-pricing=false the organization still has seat-based pricing")
	}
	if status, name := assign("off@example.com"); status != 403 || name != "FeatureNotEnabled" {
		t.Errorf("assign with pricing off: %d %s, want 403 FeatureNotEnabled", status, name)
	}

	for _, bad := range []struct {
		args []string
		says string
	}{
		{[]string{"org", "update", ten.OrgID, "--seat-pricing=maybe"}, "want true or false"},
		{[]string{"org", "update", ten.OrgID, "--seat-pricing=true", "--claim-return-url", "http://app.acme.test/"}, "https"},
		{[]string{"org", "update", "6a0f7a43-6c1e-4a43-9c25-2b1a0a0b0c0d", "--seat-pricing=true"}, "not found"},
		{[]string{"org", "update", "acme", "--seat-pricing=true"}, "not a UUID"},
		{[]string{"org", "update", ten.OrgID}, "nothing to update"},
	} {
		_, stderr, err := ctl(t, bad.args...)
		if err == nil || !strings.Contains(err.Error()+stderr, bad.says) {
			t.Errorf("seatctl %v: %v %s, want an error saying %q", bad.args, err, stderr, bad.says)
		}
		if stored() {
			t.Errorf("seatctl %v turned pricing on", bad.args)
		}
	}

	// A bare --seat-pricing means true, as on org create; both flags at once.
	out = mustCtl(t, "org", "update", ten.OrgID, "--seat-pricing", "--claim-return-url", "https://app.acme.test/in")
	if out["seat_based_pricing"] != true || out["claim_return_url"] != "https://app.acme.test/in" || !stored() {
		t.Errorf("org update --seat-pricing: printed %v, stored %v", out, stored())
	}
	if status, name := assign("on@example.com"); status != 200 {
		t.Errorf("assign with pricing back on: %d %s", status, name)
	}

	// org create takes the same flag.
	off := mustCtl(t, "org", "create", "--name", "Off", "--seat-pricing=false")["id"].(string)
	var on bool
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT seat_based_pricing FROM organizations WHERE id = $1`, off).Scan(&on); err != nil || on {
		t.Errorf("org create --seat-pricing=false stored %v (%v)", on, err)
	}
}
