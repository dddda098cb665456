package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
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

// DecodeSeatAssign parses and validates a SeatAssign body. It returns the
// decoded value, or the list of everything wrong with it (locations are
// relative to the body, starting with "body"). Unknown fields are ignored.
func DecodeSeatAssign(body []byte) (SeatAssign, []FieldError) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return SeatAssign{}, []FieldError{{Loc: []any{"body"}, Msg: "Input should be a valid dictionary or object to extract fields from", Type: "model_attributes_type"}}
		}
		return SeatAssign{}, []FieldError{{Loc: []any{"body"}, Msg: "JSON decode error: " + err.Error(), Type: "json_invalid"}}
	}
	if dec.More() {
		return SeatAssign{}, []FieldError{{Loc: []any{"body"}, Msg: "JSON decode error: unexpected data after the object", Type: "json_invalid"}}
	}
	if fields == nil { // the literal null
		return SeatAssign{}, []FieldError{{Loc: []any{"body"}, Msg: "Input should be a valid dictionary or object to extract fields from", Type: "model_attributes_type"}}
	}
	return validateFields(fields)
}

func validateFields(fields map[string]json.RawMessage) (SeatAssign, []FieldError) {
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
		if msg := checkEmail(s); msg != "" {
			fail("email", "value is not a valid email address: "+msg, "value_error")
		} else {
			a.Email = strings.TrimSpace(s)
		}
	}
	if s, ok := str("external_customer_id"); ok {
		switch {
		case s == "":
			fail("external_customer_id", "String should have at least 1 character", "string_too_short")
		case len(s) > MaxExternalID:
			fail("external_customer_id", fmt.Sprintf("String should have at most %d characters", MaxExternalID), "string_too_long")
		case !utf8.ValidString(s) || strings.ContainsRune(s, 0):
			fail("external_customer_id", "String contains invalid characters", "string_type")
		default:
			a.ExternalCustomerID = s
		}
	}
	if raw, ok := fields["metadata"]; ok && !isNull(raw) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			fail("metadata", "Input should be a valid dictionary", "dict_type")
		} else {
			var compact bytes.Buffer
			_ = json.Compact(&compact, raw) // raw came from a successful decode
			switch {
			case len(m) > MaxMetadataKeys:
				fail("metadata", fmt.Sprintf("Metadata can have at most %d keys", MaxMetadataKeys), "value_error")
			case compact.Len() > MaxMetadataBytes:
				fail("metadata", fmt.Sprintf("Metadata must be at most %d bytes when serialized", MaxMetadataBytes), "value_error")
			case bytes.ContainsRune(compact.Bytes(), 0) || strings.Contains(compact.String(), `\u0000`):
				// Postgres jsonb cannot hold NUL characters.
				fail("metadata", "Metadata must not contain NUL characters", "value_error")
			default:
				a.Metadata = json.RawMessage(compact.Bytes())
			}
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
	if n := count(a.SubscriptionID, a.CheckoutID, a.OrderID); n != 1 {
		errs = append(errs, FieldError{Loc: []any{"body"}, Msg: "Value error, exactly one of subscription_id, checkout_id or order_id must be provided", Type: "value_error"})
	}
	if n := count(a.Email, a.ExternalCustomerID, a.CustomerID); n != 1 {
		errs = append(errs, FieldError{Loc: []any{"body"}, Msg: "Value error, exactly one of email, external_customer_id or customer_id must be provided", Type: "value_error"})
	}
	if len(errs) > 0 {
		return SeatAssign{}, errs
	}
	return a, nil
}

// Validate checks an already decoded SeatAssign (as read from a queue
// message) against the same rules as DecodeSeatAssign.
func (a SeatAssign) Validate() []FieldError {
	b, err := json.Marshal(a)
	if err != nil {
		return []FieldError{{Loc: []any{"body"}, Msg: err.Error(), Type: "value_error"}}
	}
	_, errs := DecodeSeatAssign(b)
	return errs
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

// checkEmail returns why s is not a plain address (local@domain.tld), or "".
func checkEmail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "an email address must have an @-sign"
	}
	if len(s) > MaxEmailLength {
		return "the address is too long"
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "not a plain address of the form name@example.com"
	}
	at := strings.LastIndexByte(s, '@')
	domain := s[at+1:]
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "the part after the @-sign is not a valid domain"
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return "the address contains invalid characters"
		}
	}
	return ""
}

// NormalizeEmail is the form used to compare addresses: trimmed, lower case.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
