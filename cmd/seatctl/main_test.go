package main

import (
	"os"
	"strings"
	"testing"

	"github.com/seatd/seatd/storage/storagetest"
)

func TestMain(m *testing.M) {
	// The test binary doubles as seatctl, for tests that measure the
	// command as a process of its own (see runProcess).
	if os.Getenv("SEATCTL_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	storagetest.Main(m)
}

// Each command's -h lists its own flags and where to find the deployment,
// not the server's tuning, and asking for help is not an error.
func TestCommandHelpListsOwnFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"import", "-h"}, []string{"-subscription", "-report", "-in-flight", "-database-url", "example:"}},
		{[]string{"org", "create", "-h"}, []string{"usage: seatctl org create --name", "example:", "-name", "-seat-pricing", "-database-url"}},
		{[]string{"org", "update", "-h"}, []string{"usage: seatctl org update ORG", "-seat-pricing", "-claim-return-url"}},
		{[]string{"session", "create", "--help"}, []string{"-customer", "-scope", "-nats-url"}},
	} {
		var out, errOut strings.Builder
		if err := run(t.Context(), tc.args, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		help := errOut.String()
		for _, w := range tc.want {
			if !strings.Contains(help, w) {
				t.Errorf("%v: help lacks %q:\n%s", tc.args, w, help)
			}
		}
		for _, server := range []string{"-smtp-url", "-http-addr", "-mail-retry-base", "-invitation-ttl", "-rate-limit"} {
			if strings.Contains(help, server) {
				t.Errorf("%v: help lists the server flag %s", tc.args, server)
			}
		}
	}
}
