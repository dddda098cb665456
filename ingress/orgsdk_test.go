package ingress_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/storage"
)

// sdkDir holds Polar's SDK, installed by npm ci (.ci/run) for the webhook
// tests.
const sdkDir = "../webhook/testdata/node"

// TestOrgAPIWithPolarSDK: Polar's official TypeScript SDK, unchanged and
// pointed at seatd, manages seats with an organization access token:
// every call succeeds with the typed value, and every refusal raises the
// error class the SDK maps for its status, with the body a Polar client
// reads (an insufficient scope is authlib's insufficient_scope).
func TestOrgAPIWithPolarSDK(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(sdkDir, "node_modules", "@polar-sh", "sdk", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node or Polar's SDK missing: %v (CI must run npm ci in webhook/testdata/node)", err)
		}
		t.Skipf("node or Polar's SDK missing (%v); run npm ci in webhook/testdata/node", err)
	}
	f := orgSetup(t, seatdtest.Options{})
	sdk, err := filepath.Abs(sdkDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]string{"sdk": sdk, "baseUrl": f.e.HTTP.URL, "token": f.aToken,
		"readOnly": f.e.OrgToken(f.a.OrgID, storage.ScopeSeatsRead), "subscriptionId": f.a.SubscriptionID, "orderId": f.aOrder,
		"foreignSubscriptionId": f.b.SubscriptionID, "foreignSeat": f.bSeat})
	file := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(file, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), node, "testdata/orgsdk.mjs", file)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	type outcome struct {
		OK     bool           `json:"ok"`
		Value  map[string]any `json:"value"`
		Class  string         `json:"class"`
		Status int            `json:"status"`
		Error  any            `json:"error"` // the parsed body; text for a status the SDK has no class for
	}
	var res map[string]outcome
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("SDK output %q: %v", out, err)
	}
	for _, name := range []string{"assign", "assignOrder", "list", "listOrder", "resend", "revoke", "readOnlyList"} {
		if !res[name].OK {
			t.Errorf("%s: %+v", name, res[name])
		}
	}
	if v := res["assign"].Value; v["status"] != "pending" || v["subscription_id"] != f.a.SubscriptionID || v["seat_metadata"].(map[string]any)["via"] != "sdk" {
		t.Errorf("assign: %v", v)
	}
	if v := res["assignOrder"].Value; v["status"] != "claimed" || v["order_id"] != f.aOrder {
		t.Errorf("assign by order: %v", v)
	}
	if v := res["list"].Value; v["total_seats"] != 5.0 || len(v["seats"].([]any)) != 1 {
		t.Errorf("list: %v", v)
	}
	if v := res["revoke"].Value; v["status"] != "revoked" {
		t.Errorf("revoke: %v", v)
	}
	body := func(o outcome) map[string]any { m, _ := o.Error.(map[string]any); return m }
	for name, want := range map[string]struct {
		class string
		code  string
	}{
		"resendRevoked":  {"CustomerSeatsResendInvitation400Error", "seat_not_pending"},
		"listNeither":    {"PolarClientError", ""}, // a 400 the SDK has no class for
		"invalid":        {"HTTPValidationError", ""},
		"foreignAssign":  {"CustomerSeatsAssignSeat404Error", "not_found"},
		"foreignList":    {"CustomerSeatsListSeats404Error", "not_found"},
		"foreignResend":  {"CustomerSeatsResendInvitation404Error", "not_found"},
		"foreignRevoke":  {"CustomerSeatsRevokeSeat404Error", "not_found"},
		"readOnlyAssign": {"CustomerSeatsAssignSeat403Error", "insufficient_scope"},
		"readOnlyRevoke": {"CustomerSeatsRevokeSeat403Error", "insufficient_scope"},
		"unknownToken":   {"CustomerSeatsListSeats401Error", "unauthorized"},
	} {
		got := res[name]
		if got.OK || got.Class != want.class || (want.code != "" && body(got)["error"] != want.code) {
			t.Errorf("%s: %+v, want %s with error %q", name, got, want.class, want.code)
		}
	}
	if d := body(res["readOnlyAssign"])["error_description"]; d != "The request requires higher privileges than provided by the access token." {
		t.Errorf("insufficient scope as the SDK sees it: %v", res["readOnlyAssign"].Error)
	}
	if res["invalid"].Status != 422 || res["listNeither"].Status != 400 {
		t.Errorf("statuses: invalid %d, list without ids %d", res["invalid"].Status, res["listNeither"].Status)
	}
}
