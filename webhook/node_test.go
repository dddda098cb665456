package webhook

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// nodeDir holds the Node verifier and its locked dependencies; .ci/run
// installs them with npm ci.
const nodeDir = "testdata/node"

// requireNode returns the node binary, or skips the test when node or the
// verifier's dependencies are missing; under CI=true it fails instead.
func requireNode(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI must run npm ci in webhook/%s)", why, nodeDir)
		}
		t.Skipf("%s; run `npm ci` in webhook/%s to check signatures with other implementations", why, nodeDir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	for _, dep := range []string{"standardwebhooks", "@polar-sh/sdk"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", dep, "package.json")); err != nil {
			missing(dep + " is not installed")
		}
	}
	return node
}

// A delivery captured by a real HTTP receiver verifies with the Standard
// Webhooks reference library and with Polar's SDK (validateEvent), which
// share no code with Sign; tampering is caught by both.
func TestSignatureVerifiesWithOtherImplementations(t *testing.T) {
	node := requireNode(t)
	b := setup(t)
	rc := newReceiver(t)
	ep, secret := b.endpoint(t, rc.srv.URL)
	run(t, b.config(t))
	for _, typ := range EventTypes {
		ev := b.seatEvent(b.sub, uuid.NewString(), 1, typ)
		ev.Data.SeatMetadata = json.RawMessage(`{"note":"ünïcode ✓ \"quoted\""}`)
		b.publish(t, ev, "")
		b.waitStatus(t, ep.ID, ev.ID, "succeeded", 10*time.Second)
	}
	for _, h := range rc.succeeded() {
		capture, err := json.Marshal(map[string]any{
			"body": string(h.body),
			"headers": map[string]string{
				"webhook-id": h.id, "webhook-timestamp": h.timestamp, "webhook-signature": h.signature,
			},
			"secret": secret,
		})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "delivery.json")
		if err := os.WriteFile(file, capture, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), node, "verify.mjs", file)
		cmd.Dir = nodeDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: node verify: %v\n%s", h.typ, err, out)
		}
		var res map[string]any
		if err := json.Unmarshal(out[strings.LastIndexByte(strings.TrimSpace(string(out)), '\n')+1:], &res); err != nil {
			t.Fatalf("verifier output %q: %v", out, err)
		}
		if res["type"] != h.typ || res["polar_validateEvent"] != "ok" || res["standardwebhooks_base64_of_secret"] != "ok" {
			t.Errorf("%s: %s", h.typ, out)
		}
		t.Logf("%s: %s", h.typ, out)
	}
	if n := len(rc.succeeded()); n != len(EventTypes) {
		t.Errorf("%d deliveries verified, want %d", n, len(EventTypes))
	}
}
