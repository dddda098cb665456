package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/seatd/seatd/storage"
)

// orgScopeFlag is a repeatable --scope that takes only the organization
// API's scopes, so a typo cannot mint a token that silently authorises
// nothing.
type orgScopeFlag struct{ multi }

func (m *orgScopeFlag) Set(v string) error {
	if !slices.Contains(storage.OrgScopes, v) {
		return fmt.Errorf("unknown scope %q: scopes are %s", v, strings.Join(storage.OrgScopes, " and "))
	}
	return m.multi.Set(v)
}

// parseExpiresIn reads a lifetime: a Go duration (90m, 12h) or whole days
// (30d).
func parseExpiresIn(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires-in %q: give a positive duration such as 30d, 12h or 90m", s)
	}
	return d, nil
}

// tokenCreate prints an organization access token once, with its id; only
// its keyed hash is stored, so it cannot be shown again.
func tokenCreate(e *env, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization id")
	expiresIn := fs.String("expires-in", "", "lifetime, e.g. 30d, 12h (default: never expires)")
	comment := fs.String("comment", "", "what the token is for")
	var scopes orgScopeFlag
	fs.Var(&scopes, "scope", "scope (repeatable): customer_seats:read, customer_seats:write")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := required("org", *org); err != nil {
		return err
	}
	if len(scopes.multi) == 0 {
		return errors.New("give at least one --scope: " + strings.Join(storage.OrgScopes, ", "))
	}
	var ttl time.Duration
	if *expiresIn != "" {
		var err error
		if ttl, err = parseExpiresIn(*expiresIn); err != nil {
			return err
		}
	}
	if err := e.open(); err != nil {
		return err
	}
	keys, err := e.cfg.Keys()
	if err != nil {
		return err
	}
	token, t, err := e.db.CreateOrgToken(e.ctx, keys, *org, scopes.multi, ttl, *comment)
	if err != nil {
		return describe(err)
	}
	return e.print(struct {
		storage.OrgToken
		Token string `json:"token"`
	}{t, token})
}

func tokenList(e *env, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization id")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := required("org", *org); err != nil {
		return err
	}
	if err := e.open(); err != nil {
		return err
	}
	list, err := e.db.OrgTokens(e.ctx, *org)
	if err != nil {
		return describe(err)
	}
	if list == nil {
		list = []storage.OrgToken{}
	}
	return e.print(map[string]any{"tokens": list})
}

func tokenRevoke(e *env, fs *flag.FlagSet, args []string) error {
	id, err := oneID(fs, args, "seatctl token revoke TOKEN_ID")
	if err != nil {
		return err
	}
	if err := e.open(); err != nil {
		return err
	}
	t, err := e.db.RevokeOrgToken(e.ctx, id)
	if err != nil {
		return describe(err)
	}
	return e.print(t)
}
