package deploy

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

const exampleSecret = "5ea7d05ec7e7c0ffee5ea7d05ec7e7c0ffee5ea7d05ec7e7c0ffee5ea7d05ec7"

// loadCompose loads compose.yaml with the compose-spec loader, as docker
// compose does, with env as the shell's environment.
func loadCompose(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	wd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(wd, "compose.yaml")}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("seatd", true) })
}

func envOf(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// TestCompose loads compose.yaml into compose-spec's types and checks the
// system it describes: a 3-node NATS cluster, Postgres, Mailpit, the
// migration, two ingresses, two workers, a mailer and a webhook sender, all
// seatd services from one image, each with the settings seatd needs and no
// others.
func TestCompose(t *testing.T) {
	known := seatdSettings(t)
	if _, err := loadCompose(t, map[string]string{}); err == nil || !strings.Contains(err.Error(), "SEATD_SECRET_KEY") {
		t.Errorf("compose.yaml loads without SEATD_SECRET_KEY (err %v): replicas would each make up their own key", err)
	}
	p, err := loadCompose(t, map[string]string{"SEATD_SECRET_KEY": exampleSecret})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range p.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	want := []string{"ingress", "mailer", "mailpit", "migrate", "nats-1", "nats-2", "nats-3", "postgres", "webhooks", "worker"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("services %v, want %v", names, want)
	}

	// Postgres: healthy before seatd starts; seatd's URL matches it.
	pg := p.Services["postgres"]
	if pg.HealthCheck == nil || len(pg.HealthCheck.Test) == 0 {
		t.Error("postgres has no healthcheck: depends_on service_healthy would never hold")
	}
	pgEnv := envOf(pg)

	// NATS: three nodes of one config whose routes name the three services.
	natsConf := ""
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		s := p.Services[n]
		if got := envOf(s)["NATS_SERVER_NAME"]; got != n {
			t.Errorf("%s: NATS_SERVER_NAME=%q, want %q", n, got, n)
		}
		mounted := ""
		for _, v := range s.Volumes {
			if v.Target == "/etc/nats/nats-cluster.conf" {
				mounted = v.Source
			}
		}
		if mounted == "" || strings.Join(s.Command, " ") != "-c /etc/nats/nats-cluster.conf" {
			t.Errorf("%s: config %q, command %v", n, mounted, s.Command)
			continue
		}
		natsConf = mounted
	}
	if natsConf != "" {
		if _, err := os.Stat(natsConf); err != nil {
			t.Errorf("the NATS config compose mounts: %v", err)
		}
		opts := parseNATSConf(t, natsConf, "nats-1")
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		sort.Strings(routes)
		if strings.Join(routes, " ") != "nats-1:6222 nats-2:6222 nats-3:6222" {
			t.Errorf("nats-cluster.conf routes %v, want the three compose services", routes)
		}
	}

	// seatd: one image, built from the Dockerfile; the roles and replicas.
	roles := map[string]struct {
		role     string
		replicas int
	}{"migrate": {"migrate", 1}, "ingress": {"ingress", 2}, "worker": {"worker", 2}, "mailer": {"mailer", 1},
		"webhooks": {"webhooks", 1}}
	for name, want := range roles {
		s := p.Services[name]
		if s.Image != "seatd:local" || s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s: image %q build %+v; want seatd:local built from deploy/Dockerfile", name, s.Image, s.Build)
		} else if ctx, _ := filepath.Abs(".."); filepath.Clean(s.Build.Context) != ctx {
			t.Errorf("%s: build context %s, want the repository root %s", name, s.Build.Context, ctx)
		}
		if strings.Join(s.Command, " ") != want.role {
			t.Errorf("%s: command %v, want [%s]", name, s.Command, want.role)
		}
		replicas := 1
		if s.Deploy != nil && s.Deploy.Replicas != nil {
			replicas = *s.Deploy.Replicas
		}
		if replicas != want.replicas {
			t.Errorf("%s: %d replicas, want %d", name, replicas, want.replicas)
		}
		env := envOf(s)
		checkRoleEnv(t, known, roleEnv{where: "compose service " + name, role: want.role, env: env})

		u, err := url.Parse(env["DATABASE_URL"])
		if err != nil || u.Hostname() != "postgres" || u.User.Username() != pgEnv["POSTGRES_USER"] ||
			strings.TrimPrefix(u.Path, "/") != pgEnv["POSTGRES_DB"] {
			t.Errorf("%s: DATABASE_URL %q does not match the postgres service (%v)", name, env["DATABASE_URL"], pgEnv)
		} else if pw, _ := u.User.Password(); pw != pgEnv["POSTGRES_PASSWORD"] {
			t.Errorf("%s: DATABASE_URL's password is not the postgres service's", name)
		}
		if c, ok := s.DependsOn["postgres"]; !ok || c.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: does not wait for postgres to be healthy: %+v", name, s.DependsOn)
		}
		if name != "migrate" {
			if c, ok := s.DependsOn["migrate"]; !ok || c.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("%s: does not wait for the migration: %+v", name, s.DependsOn)
			}
			for _, h := range strings.Split(env["NATS_URL"], ",") {
				u, err := url.Parse(h)
				if err != nil || p.Services[u.Hostname()].Name == "" || u.Port() != "4222" {
					t.Errorf("%s: NATS_URL entry %q is not a NATS service's client port", name, h)
				}
			}
			if env["SEATD_SECRET_KEY"] != exampleSecret {
				t.Errorf("%s: SEATD_SECRET_KEY is not the shared one from the environment", name)
			}
		}
		if !s.ReadOnly {
			t.Errorf("%s: root filesystem not read-only", name)
		}
	}
	if u, err := url.Parse(envOf(p.Services["mailer"])["SMTP_URL"]); err != nil || u.Hostname() != "mailpit" || u.Port() != "1025" {
		t.Errorf("mailer's SMTP_URL does not reach Mailpit's SMTP port 1025: %v", envOf(p.Services["mailer"])["SMTP_URL"])
	}
	published := 0
	for _, port := range p.Services["ingress"].Ports {
		if port.Target == uint32(listenPort(t, envOf(p.Services["ingress"])["SEATD_HTTP_ADDR"])) {
			published++
		}
	}
	if published == 0 {
		t.Error("the ingress's listen port is not published")
	}
}
