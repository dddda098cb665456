package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// What encoding/json would silently change, and Postgres would refuse, is
// refused here instead, so that a body the edge accepts is stored and
// replayed exactly as it was sent:
//
//   - invalid UTF-8 and lone UTF-16 surrogate escapes ("\ud800"): Go turns
//     both into U+FFFD, Postgres refuses them;
//   - duplicate object keys: Go and Postgres keep the last one;
//   - NUL characters in metadata: Postgres jsonb cannot hold them;
//   - numbers that are not a finite double (1e999999) or that round a
//     non-zero value to zero (1e-999999), or whose exponent has more than
//     three digits: Postgres numeric overflows on them.

// jsonTextProblem reports why a syntactically valid JSON text would not
// survive decoding unchanged, or "".
func jsonTextProblem(raw []byte) string {
	if !utf8.Valid(raw) {
		return "Input is not valid UTF-8"
	}
	if loneSurrogate(raw) {
		return "Input contains an unpaired UTF-16 surrogate escape"
	}
	return ""
}

// loneSurrogate reports whether a JSON text holds a \uD800-\uDFFF escape
// that is not half of a surrogate pair.
func loneSurrogate(raw []byte) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 < len(raw) && raw[i+1] == 'u' {
				r, ok := hex4(raw, i+2)
				if !ok {
					return false // not valid JSON; the decoder says so
				}
				switch {
				case r >= 0xD800 && r <= 0xDBFF:
					lo, ok := uint16(0), false
					if i+7 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
						lo, ok = hex4(raw, i+8)
					}
					if !ok || lo < 0xDC00 || lo > 0xDFFF {
						return true
					}
					i += 11
					continue
				case r >= 0xDC00 && r <= 0xDFFF:
					return true
				}
				i += 5
				continue
			}
			i++ // the escaped character
		}
	}
	return false
}

func hex4(b []byte, at int) (uint16, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 16)
	return uint16(v), err == nil
}

// duplicateKey walks a valid JSON text and returns the first key that
// appears twice in one object, if any: in objects nested at most maxDepth
// deep (1: the outermost object only), or at any depth when maxDepth is 0.
func duplicateKey(raw []byte, maxDepth int) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type frame struct {
		keys   map[string]struct{}
		object bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) || err != nil {
			return "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{keys: map[string]struct{}{}, object: t == '{', key: t == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				if maxDepth == 0 || len(stack) <= maxDepth {
					if _, seen := top.keys[t]; seen {
						return t, true
					}
					top.keys[t] = struct{}{}
				}
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

// numberProblem walks a valid JSON text and reports why one of its numbers
// cannot be stored exactly, or "".
func numberProblem(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		n, ok := tok.(json.Number)
		if !ok {
			continue
		}
		s := string(n)
		mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
		exp = strings.TrimLeft(exp, "+-")
		f, err := strconv.ParseFloat(s, 64)
		switch {
		case err != nil:
			return "Number " + short(s) + " is out of range"
		case len(strings.TrimLeft(exp, "0")) > 3:
			return "Number " + short(s) + " has an exponent over 999"
		case f == 0 && strings.Trim(mant, "-0.") != "":
			return "Number " + short(s) + " is too small to represent"
		}
	}
}

func short(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// hasNUL reports whether a valid JSON text holds a NUL character in a
// string, escaped or not.
func hasNUL(raw []byte) bool {
	if bytes.IndexByte(raw, 0) >= 0 {
		return true
	}
	for i := 0; i+5 < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] == 'u' && string(raw[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character, so `\\u0000` is not a NUL
	}
	return false
}

// TopLevelDuplicate returns a key the outermost object of a valid JSON text
// holds twice, so an envelope (a batch, a claim) can be refused rather
// than read as whichever copy came last.
func TopLevelDuplicate(raw []byte) (string, bool) { return duplicateKey(raw, 1) }
