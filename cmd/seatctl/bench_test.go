package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/cmd/internal/bench"
	"github.com/seatd/seatd/storage/storagetest"
)

// TestBenchEveryMode runs every mode of `seatctl bench` once at a tiny
// size, so the benchmark cannot rot: each must verify its run and print a
// JSON line with sane figures. Nothing here is timed. seatd is built by
// the command itself (nothing sits next to the test binary), and import
// mode runs this test binary as seatctl.
func TestBenchEveryMode(t *testing.T) {
	t.Setenv("SEATCTL_TEST_MAIN", "1") // the import child is this binary acting as seatctl
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// pgbench itself is not what this test is about: a stand-in prints
	// pgbench's tps line.
	ceiling := filepath.Join(t.TempDir(), "pgbench-ceiling")
	if err := os.WriteFile(ceiling, []byte("#!/bin/sh\necho 'tps = 1000.000000 (without initial connection time)'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := run(ctx, []string{"bench", "--mode", "all", "--requests", "50", "--pools", "5", "--clients", "8",
		"--pgbench-ceiling", ceiling, "--database-url", storagetest.AdminURL()}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(bench.Modes) {
		t.Fatalf("%d JSON lines for %d modes:\n%s\n%s", len(lines), len(bench.Modes), stdout.String(), stderr.String())
	}
	for i, line := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i, err, line)
		}
		mode := bench.Modes[i]
		num := func(k string) float64 {
			t.Helper()
			v, ok := r[k].(float64)
			if !ok {
				t.Fatalf("%s: %q missing or not a number: %s", mode, k, line)
			}
			return v
		}
		if r["mode"] != mode {
			t.Fatalf("line %d is mode %v, want %s", i, r["mode"], mode)
		}
		if r["verified"] != true {
			t.Errorf("%s: not verified: %s", mode, line)
		}
		want := 50.0
		if mode == "mail" {
			want = 100 // two loads: mail drop, then SMTP
		}
		requests, seconds, perS := num("requests"), num("seconds"), num("per_s")
		if requests != want || num("applied") != want || num("refused") != 0 || num("dead_lettered") != 0 {
			t.Errorf("%s: requests %v applied %v refused %v dead-lettered %v, want %v all applied: %s",
				mode, requests, r["applied"], r["refused"], r["dead_lettered"], want, line)
		}
		if seconds <= 0 || perS <= 0 || math.Abs(perS-requests/seconds) > 0.05*perS+1 {
			t.Errorf("%s: %v requests in %v s is not %v/s", mode, requests, seconds, perS)
		}
		if num("pgbench_tps") != 1000 || math.Abs(num("pgbench_ratio")-perS/1000) > 0.01 {
			t.Errorf("%s: pgbench %v tps, ratio %v for %v/s", mode, r["pgbench_tps"], r["pgbench_ratio"], perS)
		}
		p50, p99 := num("p50_ms"), num("p99_ms")
		if p50 < 0 || p99 < p50 || p99 > 120_000 {
			t.Errorf("%s: p50 %v ms, p99 %v ms", mode, p50, p99)
		}
		if num("cpus") < 1 || num("loadavg_1m") < 0 {
			t.Errorf("%s: machine %v CPUs, load %v", mode, r["cpus"], r["loadavg_1m"])
		}
		if rss := num("seatd_peak_rss_mb"); rss < 5 || rss > 2000 {
			t.Errorf("%s: seatd peak RSS %v MiB", mode, rss)
		}
		switch mode {
		case "http-async":
			if num("applied_per_s") <= 0 || num("applied_seconds") < seconds {
				t.Errorf("http-async: applied %v/s after %v s, accepted in %v s", r["applied_per_s"], r["applied_seconds"], seconds)
			}
		case "import":
			if rss := num("seatctl_peak_rss_mb"); rss < 5 || rss > 2000 {
				t.Errorf("import: seatctl peak RSS %v MiB", rss)
			}
		case "mail":
			if num("drop_per_s") <= 0 || num("smtp_per_s") <= 0 || num("mail_per_s") != perS {
				t.Errorf("mail: drop %v/s smtp %v/s mail %v/s", r["drop_per_s"], r["smtp_per_s"], r["mail_per_s"])
			}
		}
	}
	if !strings.Contains(stderr.String(), "verified: 50 applied") {
		t.Errorf("no human summary on stderr:\n%s", stderr.String())
	}
}

// A mode that cannot finish reports failure and prints no figures.
func TestBenchFailureReportsNoNumbers(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"bench", "--mode", "queue", "--requests", "10", "--seatd", "/bin/false",
		"--database-url", storagetest.AdminURL()}, nil, &stdout, &stderr)
	if err == nil {
		t.Fatal("bench with a seatd that exits at once succeeded")
	}
	if stdout.Len() != 0 {
		t.Errorf("a failed mode printed figures: %s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "bench queue: FAILED") {
		t.Errorf("stderr does not say the mode failed:\n%s", stderr.String())
	}
}

func TestBenchRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "--mode", "fast"},
		{"bench", "--mode", "queue", "--clients", "0"},
		{"bench", "--mode", "queue", "--claim-ratio", "2"},
		{"bench", "--mode", "queue", "--seatd-env", "NOEQUALS"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, nil, &stdout, &stderr); err == nil {
			t.Errorf("%v: accepted", args)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v printed %s", args, stdout.String())
		}
	}
}
