package events

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeSeatAssign: no input panics the decoders (the portal's and the
// organization API's), and whatever they accept re-validates and
// round-trips, so no malformed assign is published.
func FuzzDecodeSeatAssign(f *testing.F) {
	f.Add([]byte(`{"subscription_id":"7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f","email":"a@example.com"}`))
	f.Add([]byte(`{"order_id":"7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f","customer_id":"7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f","immediate_claim":true,"metadata":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"checkout_id":null,"external_customer_id":"x","metadata":{}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"email":"\u0000@x.y"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		publishes := func(r Request) {
			r.ID, r.Op = "7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f", OpAssign
			data, err := r.Encode()
			if err != nil {
				t.Fatalf("accepted %q but cannot publish it: %v", body, err)
			}
			if _, err := DecodeRequest(data); err != nil {
				t.Fatalf("published message does not decode: %v", err)
			}
		}
		if o, errs := DecodeOrgSeatAssign(body); errs == nil {
			publishes(Request{OrganizationID: "7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f", Assign: &o})
		}
		a, errs := DecodeSeatAssign(body)
		if errs != nil {
			for _, e := range errs {
				if len(e.Loc) == 0 || e.Msg == "" || e.Type == "" {
					t.Fatalf("incomplete error %+v", e)
				}
			}
			return
		}
		if again := a.Validate(); again != nil {
			t.Fatalf("accepted %q but re-validation fails: %v", body, again)
		}
		publishes(Request{CustomerID: "7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f", Assign: &a})
	})
}

// FuzzDecodeRequest: the worker's message decoder never panics, and a
// message it accepts is well formed.
func FuzzDecodeRequest(f *testing.F) {
	ok := Request{ID: "7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f", Op: OpAssign, CustomerID: "7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
		Assign: &SeatAssign{SubscriptionID: "7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f", Email: "a@example.com"}}
	b, _ := json.Marshal(ok)
	f.Add(b)
	f.Add([]byte(`{"id":"7f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f","op":"claim","token_hash":"` + string(make([]byte, 64)) + `"}`))
	f.Add([]byte(`{"id":"x","op":"revoke"}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil {
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("accepted a request that fails Check: %v", err)
		}
		if r.Op == OpAssign && r.Assign.Validate() != nil {
			t.Fatal("accepted an invalid assign")
		}
	})
}
