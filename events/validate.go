package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the Assign Seat API.
const (
	MaxMetadataKeys  = 10
	MaxMetadataBytes = 1024
	MaxExternalID    = 255
	MaxEmailLength   = 254
)

// FieldError is one entry of an HTTPValidationError: loc names the field
// (e.g. ["body", "metadata"]), msg says what is wrong, typ classifies it.
type FieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// ValidationError is the 422 body: {"detail": [FieldError, ...]}.
type ValidationError struct {
	Detail []FieldError `json:"detail"`
}

func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Detail))
	for i, d := range v.Detail {
		parts[i] = fmt.Sprintf("%v: %s", d.Loc, d.Msg)
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// WithPrefix returns the errors with prefix prepended to every loc, used to
// name an item of a batch (["body", "items", 3, ...]).
func WithPrefix(prefix []any, errs []FieldError) []FieldError {
	out := make([]FieldError, len(errs))
	for i, e := range errs {
		loc := append(append([]any{}, prefix...), e.Loc...)
		out[i] = FieldError{Loc: loc, Msg: e.Msg, Type: e.Type}
	}
	return out
}

// DecodeSeatAssign parses and validates the customer portal's SeatAssign
// body (Polar's CustomerSeatAssign). It returns the decoded value, or the
// list of everything wrong with it (locations are relative to the body,
// starting with "body"). Unknown fields are ignored.
//
// What it accepts is exactly what the queue and the worker accept: the
// metadata is kept as its compact JSON text (the canonical form, measured
// once, here) and Encode and DecodeRequest carry it unchanged.
func DecodeSeatAssign(body []byte) (SeatAssign, []FieldError) { return decodeSeatAssign(body, true) }

// DecodeOrgSeatAssign parses and validates the organization API's body
// (Polar's SeatAssign): as DecodeSeatAssign, but the container is exactly
// one of subscription_id or order_id. It has no checkout_id, which is
// ignored like any unknown field.
func DecodeOrgSeatAssign(body []byte) (SeatAssign, []FieldError) {
	return decodeSeatAssign(body, false)
}

func decodeSeatAssign(body []byte, checkout bool) (SeatAssign, []FieldError) {
	bodyErr := func(msg, typ string) (SeatAssign, []FieldError) {
		return SeatAssign{}, []FieldError{{Loc: []any{"body"}, Msg: msg, Type: typ}}
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return bodyErr("Input should be a valid dictionary or object to extract fields from", "model_attributes_type")
		}
		return bodyErr("JSON decode error: "+err.Error(), "json_invalid")
	}
	if dec.More() {
		return bodyErr("JSON decode error: unexpected data after the object", "json_invalid")
	}
	if fields == nil { // the literal null
		return bodyErr("Input should be a valid dictionary or object to extract fields from", "model_attributes_type")
	}
	// Text Go would decode by replacing it with U+FFFD is refused, naming
	// the field when it is inside one.
	var textErrs []FieldError
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if msg := jsonTextProblem(fields[k]); msg != "" {
			textErrs = append(textErrs, FieldError{Loc: []any{"body", k}, Msg: msg, Type: "value_error"})
		}
	}
	if textErrs != nil {
		return SeatAssign{}, textErrs
	}
	if msg := jsonTextProblem(body); msg != "" {
		return bodyErr("JSON decode error: "+msg, "json_invalid")
	}
	if k, dup := duplicateKey(body, 1); dup {
		return SeatAssign{}, []FieldError{{Loc: []any{"body", k}, Msg: fmt.Sprintf("Duplicate key %q", k), Type: "value_error"}}
	}
	if !checkout {
		delete(fields, "checkout_id")
	}
	return validateFields(fields, checkout)
}

func validateFields(fields map[string]json.RawMessage, checkout bool) (SeatAssign, []FieldError) {
	var (
		a    SeatAssign
		errs []FieldError
	)
	fail := func(field, msg, typ string) {
		errs = append(errs, FieldError{Loc: []any{"body", field}, Msg: msg, Type: typ})
	}
	str := func(field string) (string, bool) {
		raw, ok := fields[field]
		if !ok || isNull(raw) {
			return "", false
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			fail(field, "Input should be a valid string", "string_type")
			return "", false
		}
		return s, true
	}
	uuidField := func(field string, dst *string) {
		s, ok := str(field)
		if !ok {
			return
		}
		id, ok := ParseUUID(s)
		if !ok {
			fail(field, "Input should be a valid UUID", "uuid_parsing")
			return
		}
		*dst = id
	}

	uuidField("subscription_id", &a.SubscriptionID)
	uuidField("checkout_id", &a.CheckoutID)
	uuidField("order_id", &a.OrderID)
	uuidField("customer_id", &a.CustomerID)
	if s, ok := str("email"); ok {
		if e, msg := ParseEmail(s); msg != "" {
			fail("email", "value is not a valid email address: "+msg, "value_error")
		} else {
			a.Email = e.Display
		}
	}
	externalID := func(field string, dst *string) {
		s, ok := str(field)
		if !ok {
			return
		}
		switch {
		case s == "":
			fail(field, "String should have at least 1 character", "string_too_short")
		case len(s) > MaxExternalID:
			fail(field, fmt.Sprintf("String should have at most %d characters", MaxExternalID), "string_too_long")
		case !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl):
			fail(field, "String contains invalid characters", "string_type")
		default:
			*dst = s
		}
	}
	externalID("external_customer_id", &a.ExternalCustomerID)
	externalID("external_member_id", &a.ExternalMemberID)
	uuidField("member_id", &a.MemberID)
	if raw, ok := fields["metadata"]; ok && !isNull(raw) {
		if meta, msg := checkMetadata(raw); msg != "" {
			typ := "value_error"
			if msg == msgDictType {
				typ = "dict_type"
			}
			fail("metadata", msg, typ)
		} else {
			a.Metadata = meta
		}
	}
	if raw, ok := fields["immediate_claim"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &a.ImmediateClaim); err != nil {
			fail("immediate_claim", "Input should be a valid boolean", "bool_type")
		}
	}
	if len(errs) > 0 {
		return SeatAssign{}, errs
	}
	// Polar's messages: the portal's CustomerSeatAssign takes a checkout,
	// the organization API's SeatAssign does not.
	switch n := count(a.SubscriptionID, a.CheckoutID, a.OrderID); {
	case n != 1 && checkout:
		errs = append(errs, FieldError{Loc: []any{"body"}, Msg: "Value error, Exactly one of subscription_id, order_id, or checkout_id must be provided", Type: "value_error"})
	case n != 1:
		errs = append(errs, FieldError{Loc: []any{"body"}, Msg: "Value error, Exactly one of subscription_id or order_id must be provided", Type: "value_error"})
	}
	if msg := recipientProblem(a); msg != "" {
		errs = append(errs, FieldError{Loc: []any{"body"}, Msg: "Value error, " + msg, Type: "value_error"})
	}
	if len(errs) > 0 {
		return SeatAssign{}, errs
	}
	return a, nil
}

// recipientProblem applies Polar's SeatAssign.validate_recipient: at least
// one identifier; customer identifiers (customer_id, external_customer_id)
// and member identifiers (member_id, external_member_id) never mix; not
// both member identifiers; with a customer identifier, no second one and
// no email; member_id never with email. external_member_id may come with
// an email (find the member, or create it and link the id).
func recipientProblem(a SeatAssign) string {
	customerIDs := count(a.ExternalCustomerID, a.CustomerID)
	memberIDs := count(a.ExternalMemberID, a.MemberID)
	email := count(a.Email)
	switch {
	case customerIDs+memberIDs+email == 0:
		return "At least one of email, external_customer_id, customer_id, external_member_id, or member_id must be provided"
	case customerIDs > 0 && memberIDs > 0:
		return "Cannot combine external_customer_id/customer_id with external_member_id/member_id"
	case memberIDs > 1:
		return "Cannot provide both external_member_id and member_id"
	case customerIDs > 0 && customerIDs+email != 1:
		return "Exactly one of email, external_customer_id, or customer_id must be provided"
	case a.MemberID != "" && email > 0:
		return "Cannot combine member_id with email"
	}
	return ""
}

// Validate checks an already decoded SeatAssign (as read from a queue
// message) against the same rules as DecodeSeatAssign, on its canonical
// encoding.
func (a SeatAssign) Validate() []FieldError {
	b, err := Marshal(a)
	if err != nil {
		return []FieldError{{Loc: []any{"body"}, Msg: err.Error(), Type: "value_error"}}
	}
	_, errs := DecodeSeatAssign(b)
	return errs
}

const msgDictType = "Input should be a valid dictionary"

// checkMetadata validates a metadata object and returns its canonical form
// (compact JSON text, nothing escaped that was not escaped when sent), or
// why it is refused. The limits apply to the canonical form, which is what
// travels through the queue and is measured again by the worker.
func checkMetadata(raw json.RawMessage) (json.RawMessage, string) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, msgDictType
	}
	if k, dup := duplicateKey(raw, 0); dup {
		return nil, fmt.Sprintf("Metadata has the key %q more than once", k)
	}
	if msg := jsonTextProblem(raw); msg != "" {
		return nil, "Metadata: " + msg
	}
	if msg := numberProblem(raw); msg != "" {
		return nil, "Metadata: " + msg
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, msgDictType
	}
	switch {
	case len(m) > MaxMetadataKeys:
		return nil, fmt.Sprintf("Metadata can have at most %d keys", MaxMetadataKeys)
	case compact.Len() > MaxMetadataBytes:
		return nil, fmt.Sprintf("Metadata must be at most %d bytes when serialized", MaxMetadataBytes)
	case hasNUL(compact.Bytes()):
		// Postgres jsonb cannot hold NUL characters.
		return nil, "Metadata must not contain NUL characters"
	}
	return json.RawMessage(compact.Bytes()), ""
}

func count(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// NormalizeEmail is the form used to compare addresses: see EmailKey.
func NormalizeEmail(s string) string { return EmailKey(s) }
