package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

// TestSystemdUnits parses every unit with systemd's unit syntax and checks
// what each role runs with: seatd ROLE as the seatd user, the shared
// environment file (whose variables are all seatd's), a listen port of its
// own on the machine, and a target that starts them all.
func TestSystemdUnits(t *testing.T) {
	known := seatdSettings(t)
	base := readEnvFile(t, "systemd/seatd.env.example")
	units := map[string][]*unit.UnitOption{}
	paths, _ := filepath.Glob("systemd/*.service")
	paths = append(paths, "systemd/seatd.target")
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		opts, err := unit.DeserializeOptions(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		units[filepath.Base(p)] = opts
	}
	value := func(opts []*unit.UnitOption, section, name string) []string {
		var out []string
		for _, o := range opts {
			if o.Section == section && o.Name == name {
				out = append(out, o.Value)
			}
		}
		return out
	}
	wants := strings.Fields(strings.Join(value(units["seatd.target"], "Unit", "Wants"), " "))
	wanted := map[string]bool{}
	for _, w := range wants {
		file := regexp.MustCompile(`@[^.]+\.`).ReplaceAllString(w, "@.")
		if _, ok := units[file]; !ok {
			t.Errorf("seatd.target wants %s, which is not here", w)
		}
		wanted[file] = true
	}
	listeners := map[int]string{} // port: the unit listening on it
	for file, role := range map[string]string{"seatd-migrate.service": "migrate", "seatd-ingress.service": "ingress",
		"seatd-worker@.service": "worker", "seatd-mailer.service": "mailer", "seatd-webhooks.service": "webhooks"} {
		opts, ok := units[file]
		if !ok {
			t.Errorf("no %s", file)
			continue
		}
		if got := value(opts, "Service", "ExecStart"); len(got) != 1 || got[0] != "/usr/local/bin/seatd "+role {
			t.Errorf("%s: ExecStart %v", file, got)
		}
		if got := value(opts, "Service", "User"); len(got) != 1 || got[0] == "root" {
			t.Errorf("%s: User %v: run as an unprivileged user", file, got)
		}
		if got := value(opts, "Service", "EnvironmentFile"); len(got) != 1 || got[0] != "/etc/seatd/seatd.env" {
			t.Errorf("%s: EnvironmentFile %v", file, got)
		}
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for _, e := range value(opts, "Service", "Environment") {
			k, v, _ := strings.Cut(strings.ReplaceAll(e, "%i", "1"), "=")
			env[k] = v
		}
		checkRoleEnv(t, known, roleEnv{where: file, role: role, env: env})
		if !wanted[file] {
			t.Errorf("seatd.target does not want %s: systemctl enable --now seatd.target would not start it", file)
		}
		listen := env["SEATD_HEALTH_ADDR"]
		if role == "ingress" {
			listen = env["SEATD_HTTP_ADDR"]
		}
		if role != "migrate" {
			if listen == "" {
				t.Errorf("%s: no listen address for /healthz and /readyz", file)
			} else if port := listenPort(t, listen); listeners[port] != "" {
				t.Errorf("%s and %s both listen on port %d", file, listeners[port], port)
			} else {
				listeners[port] = file
			}
		}
		if role != "migrate" && len(value(opts, "Service", "Restart")) == 0 {
			t.Errorf("%s: no Restart=", file)
		}
	}
}

func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is not NAME=value", path, line)
		}
		env[k] = v
	}
	return env
}

// TestDockerfile checks the image's shape: a build stage, a final stage
// from a minimal base that runs as a non-root user, and seatd as the
// entry point.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string // instructions per stage
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("instruction before FROM: %s", line)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], line)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	buildStage := strings.Fields(stages[0][0])
	if len(buildStage) != 4 || !strings.EqualFold(buildStage[2], "AS") {
		t.Fatalf("first stage %q is not named", stages[0][0])
	}
	if !strings.Contains(strings.Join(stages[0], "\n"), "go build") || !strings.Contains(strings.Join(stages[0], "\n"), "./cmd/seatd") {
		t.Error("the build stage does not build ./cmd/seatd")
	}
	final := strings.Join(stages[len(stages)-1], "\n")
	if !strings.Contains(final, "COPY --from="+buildStage[3]+" ") {
		t.Errorf("the final stage copies nothing from the build stage %q", buildStage[3])
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(final)
	if user == nil || user[1] == "root" || strings.HasPrefix(user[1], "0") {
		t.Errorf("the final stage runs as %v: want a non-root USER", user)
	}
	if !regexp.MustCompile(`(?m)^ENTRYPOINT \["/usr/local/bin/seatd"\]`).MatchString(final) {
		t.Error("the entry point is not seatd")
	}
}
