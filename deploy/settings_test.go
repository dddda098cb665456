package deploy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// seatdBin is seatd built from ../cmd/seatd for these tests.
var seatdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "seatd-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	seatdBin = filepath.Join(dir, "seatd")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goTool, "build", "-o", seatdBin, "./cmd/seatd")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building seatd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seatdSettings are the environment variables seatd reads, from its own
// usage text (seatd ROLE -h names each flag's variable).
func seatdSettings(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(seatdBin, "worker", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("seatd worker -h: %v\n%s", err, out)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env ([A-Z_][A-Z0-9_]*)\)`).FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) < 15 || !names["DATABASE_URL"] || !names["SEATD_NATS_REPLICAS"] {
		t.Fatalf("could not read seatd's settings from its usage:\n%s", out)
	}
	return names
}

// roleEnv is the environment one seatd role gets from a deployment file.
type roleEnv struct {
	where string // e.g. "compose service worker"
	role  string // serve, ingress, worker, mailer, webhooks, migrate
	env   map[string]string
	// probed: an orchestrator checks /healthz and /readyz of this role.
	probed bool
}

// checkRoleEnv checks one role's environment: every variable is one seatd
// reads, every value parses (seatd ROLE -h with that environment fails on a
// value of the wrong type), and every setting a clustered deployment needs
// is there.
func checkRoleEnv(t *testing.T, known map[string]bool, r roleEnv) {
	t.Helper()
	var unknown []string
	for k := range r.env {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("%s sets %v, which seatd does not read", r.where, unknown)
	}

	cmd := exec.Command(seatdBin, r.role, "-h")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range r.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: seatd %s refuses its environment: %v: %s", r.where, r.role, err, lastLine(out))
	}

	need := []string{"DATABASE_URL"}
	if r.role != "migrate" {
		need = append(need, "NATS_URL", "SEATD_NATS_REPLICAS", "SEATD_SECRET_KEY", "SEATD_PUBLIC_URL")
	}
	if r.role == "mailer" {
		need = append(need, "SMTP_URL")
	}
	if r.probed && (r.role == "worker" || r.role == "mailer" || r.role == "webhooks") {
		need = append(need, "SEATD_HEALTH_ADDR")
	}
	if r.role == "ingress" {
		need = append(need, "SEATD_HTTP_ADDR")
	}
	for _, k := range need {
		if strings.TrimSpace(r.env[k]) == "" {
			t.Errorf("%s does not set %s", r.where, k)
		}
	}
	if r.role == "migrate" {
		return
	}
	if r.env["SEATD_NATS_REPLICAS"] != "3" {
		t.Errorf("%s: SEATD_NATS_REPLICAS=%q, want 3 on a 3-node cluster", r.where, r.env["SEATD_NATS_REPLICAS"])
	}
	if n := len(strings.Split(r.env["NATS_URL"], ",")); n != 3 {
		t.Errorf("%s: NATS_URL %q names %d servers, want all 3 nodes", r.where, r.env["NATS_URL"], n)
	}
	for _, k := range []string{"SEATD_HTTP_ADDR", "SEATD_HEALTH_ADDR"} {
		if v := r.env[k]; v != "" {
			host, port, err := net.SplitHostPort(v)
			if _, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil {
				t.Errorf("%s: %s=%q is not host:port", r.where, k, v)
			} else if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && r.probed {
				t.Errorf("%s: %s=%q listens on loopback only: its probes cannot reach it", r.where, k, v)
			}
		}
	}
}

// listenPort is the port of a host:port setting.
func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return n
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// TestSeatdSettingsList makes sure the list the other tests check against
// is seatd's: a known variable is in it, a made-up one is not, and a bad
// value is refused.
func TestSeatdSettingsList(t *testing.T) {
	known := seatdSettings(t)
	for _, k := range []string{"DATABASE_URL", "NATS_URL", "SEATD_SECRET_KEY", "SEATD_HEALTH_ADDR", "SMTP_URL"} {
		if !known[k] {
			t.Errorf("%s missing from seatd's settings", k)
		}
	}
	if known["SEATD_REPLICAS"] {
		t.Error("SEATD_REPLICAS is not a setting")
	}
	cmd := exec.Command(seatdBin, "worker", "-h")
	cmd.Env = []string{"SEATD_NATS_REPLICAS=three"}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("seatd accepted SEATD_NATS_REPLICAS=three: %s", out)
	}
}
