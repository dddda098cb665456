package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/cmd/seatdtest"
	"github.com/seatd/seatd/events"
)

// htmlHeavy is metadata well inside 1,024 bytes as sent that grows past it
// when <, >, & and U+2028 are escaped.
var htmlHeavy = `{"note":"` + strings.Repeat("<&>", 100) + strings.Repeat("\u2028", 100) + `"}`

func assignBody(sub, email, meta string) string {
	return `{"subscription_id":"` + sub + `","email":"` + email + `","metadata":` + meta + `}`
}

// TestMetadataTheEdgeAcceptsIsApplied: metadata the edge accepts is
// queued and applied (never 503), stored as sent, and a replay with the
// same key returns the same seat.
func TestMetadataTheEdgeAcceptsIsApplied(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	body := assignBody(ten.SubscriptionID, "html@example.com", htmlHeavy)
	var first seatdtest.Response
	for i := 0; i < 2; i++ {
		r := e.Do("POST", seatsPath, ten.Token, body, "Idempotency-Key", "meta-1")
		if r.Status != 200 {
			t.Fatalf("call %d: %d %s", i, r.Status, r.Body)
		}
		if i == 0 {
			first = r
		} else if r.JSON(t)["id"] != first.JSON(t)["id"] {
			t.Errorf("replay made another seat: %s", r.Body)
		}
	}
	var stored string
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT seat_metadata->>'note' FROM seats WHERE id = $1`, first.JSON(t)["id"]).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != strings.Repeat("<&>", 100)+strings.Repeat("\u2028", 100) {
		t.Errorf("stored metadata %q", stored)
	}
	// The edges of what numbers and strings may be all reach Postgres.
	edge := `{"n":[1e308,-1e-300,5e-324,0e-999,-0,12345678901234567890123],"p":"\ud83d\ude00","q":"\\u0000"}`
	if r := e.Do("POST", seatsPath, ten.Token, assignBody(ten.SubscriptionID, "edge@example.com", edge)); r.Status != 200 {
		t.Errorf("edge numbers and strings: %d %s", r.Status, r.Body)
	}
}

// TestMetadataPostgresCannotHoldIs422: what would fail in Postgres or be
// silently changed is refused at the edge with 422, and nothing is
// recorded.
func TestMetadataPostgresCannotHoldIs422(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{})
	var thirty []string
	for i := 0; i < 30; i++ {
		thirty = append(thirty, fmt.Sprintf(`"k%d":%d`, i%10, i))
	}
	for name, meta := range map[string]string{
		"lone surrogate":        `{"s":"\ud800"}`,
		"invalid UTF-8":         "{\"s\":\"\xff\xfe\"}",
		"huge number":           `{"n":1e999999}`,
		"tiny number":           `{"n":-1e-999999}`,
		"30 keys, 10 distinct":  "{" + strings.Join(thirty, ",") + "}",
		"duplicate nested keys": `{"a":{"x":1,"x":2}}`,
		"NUL":                   `{"s":"a\u0000b"}`,
	} {
		r := e.Do("POST", seatsPath, ten.Token, assignBody(ten.SubscriptionID, "m@example.com", meta))
		if r.Status != 422 {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
			continue
		}
		var ve events.ValidationError
		r.Decode(t, &ve)
		if len(ve.Detail) == 0 || fmt.Sprint(ve.Detail[0].Loc) != "[body metadata]" {
			t.Errorf("%s: %s", name, r.Body)
		}
	}
	if r := e.Do("POST", seatsPath, ten.Token, `{"subscription_id":"`+ten.SubscriptionID+`","email":"a@example.com","email":"b@example.com"}`); r.Status != 422 {
		t.Errorf("duplicate email field: %d %s", r.Status, r.Body)
	}
	// Envelopes too: two "items" or two tokens are not read as the last one.
	item := assignBody(ten.SubscriptionID, "env@example.com", `{}`)
	if r := e.Do("POST", seatsPath+"/batch", ten.Token, `{"items":[`+item+`],"items":[`+item+`,`+item+`]}`); r.Status != 422 {
		t.Errorf("batch with two items keys: %d %s", r.Status, r.Body)
	}
	if r := e.Do("POST", claimPath, "", `{"invitation_token":"a","invitation_token":"b"}`); r.Status != 422 {
		t.Errorf("claim with two tokens: %d %s", r.Status, r.Body)
	}
	var n int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM requests`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d requests recorded for refused bodies", n)
	}
}

// TestBatchItemsAreNotStranded: a batch with HTML-heavy metadata in one
// item completes every item.
func TestBatchItemsAreNotStranded(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{})
	ten := e.Tenant(seatdtest.TenantOptions{Seats: 10})
	items := []string{
		assignBody(ten.SubscriptionID, "b0@example.com", `{}`),
		assignBody(ten.SubscriptionID, "b1@example.com", htmlHeavy),
		assignBody(ten.SubscriptionID, "b2@example.com", `{"a":1}`),
		assignBody(ten.SubscriptionID, "b3@example.com", htmlHeavy),
	}
	r := e.Do("POST", seatsPath+"/batch", ten.Token, `{"items":[`+strings.Join(items, ",")+`]}`)
	if r.Status != 202 {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	var b map[string]any
	seatdtest.WaitFor(t, 15*time.Second, "batch completed", func() bool {
		b = poll(t, e, ten.Token, r.Header.Get("Location"))
		return b["status"] == "completed"
	})
	if c := b["counts"].(map[string]any); c["succeeded"] != float64(4) {
		t.Errorf("counts %v", c)
	}
}

// TestRoundTripThroughJetStream: bodies the edge accepts, encoded, stored
// in a real JetStream stream and read back, decode to exactly what the
// edge accepted.
func TestRoundTripThroughJetStream(t *testing.T) {
	t.Parallel()
	e := seatdtest.New(t, seatdtest.Options{Workers: -1})
	ctx := context.Background()
	st, err := e.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "ROUNDTRIP", Subjects: []string{"roundtrip.>"}})
	if err != nil {
		t.Fatal(err)
	}
	sub := uuid.NewString()
	metas := []string{
		htmlHeavy,
		`{"emoji":"😀","pair":"\ud83d\ude00","esc":"\"\\/\b\f\n\r\t","u":"\u00e9"}`,
		`{"n":[0,-0,1.5e300,-2E-300,12345678901234567890],"b":[true,false,null],"o":{"x":{"y":[]}}}`,
		`{ "spaced" : [ 1 , 2 ] }`,
		`{"html":"</script><script>alert(1)</script>"}`,
	}
	for i, m := range metas {
		body := []byte(assignBody(sub, "rt@example.com", m))
		a, errs := events.DecodeSeatAssign(body)
		if errs != nil {
			t.Fatalf("body %d refused: %v", i, errs)
		}
		req := events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: sub, Assign: &a, SubmittedAt: time.Now().UTC()}
		data, err := req.Encode()
		if err != nil {
			t.Fatalf("body %d: encode: %v", i, err)
		}
		ack, err := e.JS.Publish(ctx, "roundtrip.requests", data, jetstream.WithMsgID(req.ID))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := st.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(msg.Data, data) {
			t.Fatalf("body %d: the stream changed the message", i)
		}
		got, err := events.DecodeRequest(msg.Data)
		if err != nil {
			t.Fatalf("body %d: the worker refuses it: %v", i, err)
		}
		if !reflect.DeepEqual(*got.Assign, a) {
			t.Errorf("body %d changed:\n sent %s\n got  %s", i, a.Metadata, got.Assign.Metadata)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(m)); err != nil {
			t.Fatalf("body %d: metadata %s: %v", i, m, err)
		}
		if !bytes.Equal(got.Assign.Metadata, compact.Bytes()) {
			t.Errorf("body %d: metadata %s, sent %s", i, got.Assign.Metadata, compact.Bytes())
		}
	}
}
