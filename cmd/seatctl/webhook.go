package main

import (
	"errors"
	"flag"

	"github.com/seatd/seatd/webhook"
)

// webhookAdmin opens the database and the sealer of endpoint secrets,
// which needs the deployment's secret key (SEATD_SECRET_KEY).
func (e *env) webhookAdmin() (*webhook.Admin, error) {
	if err := e.open(); err != nil {
		return nil, err
	}
	keys, err := e.cfg.Keys()
	if err != nil {
		return nil, err
	}
	sealer, err := webhook.NewSealer(keys)
	if err != nil {
		return nil, err
	}
	return &webhook.Admin{DB: e.db, Sealer: sealer}, nil
}

// oneID parses flags and the single positional id of a command.
func oneID(fs *flag.FlagSet, args []string, usage string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", errors.New("usage: " + usage)
	}
	return pos[0], nil
}

func webhookCreate(e *env, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization id")
	url := fs.String("url", "", "endpoint URL (http or https)")
	types := fs.String("events", "", "comma-separated event types (default: customer_seat.assigned,customer_seat.claimed,customer_seat.revoked)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := errors.Join(required("org", *org), required("url", *url)); err != nil {
		return err
	}
	list, err := webhook.ParseEvents(*types)
	if err != nil {
		return describe(err)
	}
	a, err := e.webhookAdmin()
	if err != nil {
		return err
	}
	ep, secret, err := a.Create(e.ctx, *org, *url, list)
	if err != nil {
		return describe(err)
	}
	return e.print(endpointWithSecret{ep, secret})
}

func webhookList(e *env, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization id")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := required("org", *org); err != nil {
		return err
	}
	a, err := e.webhookAdmin()
	if err != nil {
		return err
	}
	list, err := a.List(e.ctx, *org)
	if err != nil {
		return describe(err)
	}
	return e.print(map[string]any{"endpoints": list})
}

func webhookDelete(e *env, fs *flag.FlagSet, args []string) error {
	id, err := oneID(fs, args, "seatctl webhook delete ENDPOINT")
	if err != nil {
		return err
	}
	a, err := e.webhookAdmin()
	if err != nil {
		return err
	}
	if err := a.Delete(e.ctx, id); err != nil {
		return describe(err)
	}
	return e.print(map[string]any{"id": id, "deleted": true})
}

func webhookRotate(e *env, fs *flag.FlagSet, args []string) error {
	id, err := oneID(fs, args, "seatctl webhook rotate-secret ENDPOINT")
	if err != nil {
		return err
	}
	a, err := e.webhookAdmin()
	if err != nil {
		return err
	}
	ep, secret, err := a.RotateSecret(e.ctx, id)
	if err != nil {
		return describe(err)
	}
	return e.print(endpointWithSecret{ep, secret})
}

func webhookEnable(e *env, fs *flag.FlagSet, args []string) error {
	id, err := oneID(fs, args, "seatctl webhook enable ENDPOINT")
	if err != nil {
		return err
	}
	a, err := e.webhookAdmin()
	if err != nil {
		return err
	}
	ep, err := a.Enable(e.ctx, id)
	if err != nil {
		return describe(err)
	}
	return e.print(ep)
}

func webhookDeliveries(e *env, fs *flag.FlagSet, args []string) error {
	status := fs.String("status", "", "only deliveries in this state: pending, succeeded, failed or skipped")
	limit := fs.Int("limit", 50, "at most this many, newest first (1-1000)")
	id, err := oneID(fs, args, "seatctl webhook deliveries ENDPOINT [--status S] [--limit N]")
	if err != nil {
		return err
	}
	a, err := e.webhookAdmin()
	if err != nil {
		return err
	}
	ds, err := a.Deliveries(e.ctx, id, *status, *limit)
	if err != nil {
		return describe(err)
	}
	return e.print(map[string]any{"deliveries": ds})
}

func webhookRedeliver(e *env, fs *flag.FlagSet, args []string) error {
	endpoint := fs.String("endpoint", "", "redeliver every failed or skipped delivery of this endpoint")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if (len(pos) == 1) == (*endpoint != "") || len(pos) > 1 {
		return errors.New("usage: seatctl webhook redeliver (DELIVERY | --endpoint ENDPOINT)")
	}
	a, err := e.webhookAdmin()
	if err != nil {
		return err
	}
	if *endpoint != "" {
		n, err := a.RedeliverFailed(e.ctx, *endpoint)
		if err != nil {
			return describe(err)
		}
		return e.print(map[string]any{"endpoint_id": *endpoint, "requeued": n})
	}
	d, err := a.Redeliver(e.ctx, pos[0])
	if err != nil {
		return describe(err)
	}
	return e.print(d)
}

// endpointWithSecret is an endpoint as create and rotate-secret print it:
// the only times its secret is shown.
type endpointWithSecret struct {
	webhook.Endpoint
	Secret string `json:"secret"`
}
