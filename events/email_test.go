package events

import (
	"strings"
	"testing"
)

func TestParseEmailOneMailboxOneKey(t *testing.T) {
	same := []string{
		"user@bücher.example",
		"user@xn--bcher-kva.example",
		"User@BÜCHER.example",
		" user@bücher.example ",
		"user@XN--BCHER-KVA.EXAMPLE",
	}
	for _, s := range same {
		e, msg := ParseEmail(s)
		if msg != "" {
			t.Errorf("%q refused: %s", s, msg)
			continue
		}
		if e.Key != "user@xn--bcher-kva.example" {
			t.Errorf("%q keys to %q", s, e.Key)
		}
		if e.Display != strings.Trim(s, " ") {
			t.Errorf("%q displays as %q", s, e.Display)
		}
	}
	if e, _ := ParseEmail(" user@x.example "); e.Key != "user@x.example" || e.Display != "user@x.example" {
		t.Errorf("spaces: %+v", e)
	}
}

func TestParseEmailRefuses(t *testing.T) {
	for name, s := range map[string]string{
		"CR LF":             "user@x.example\r\nBcc: evil@x.example",
		"trailing LF":       "user@x.example\n",
		"leading CR":        "\ruser@x.example",
		"tab inside":        "us\ter@x.example",
		"invalid UTF-8":     "us\xffer@x.example",
		"local part 65":     strings.Repeat("a", 65) + "@x.example",
		"address over 254":  "a@" + strings.Repeat("b", 250) + ".example",
		"IPv4 literal":      "user@[1.2.3.4]",
		"IPv6 literal":      "user@[IPv6:2001:db8::1]",
		"no domain dot":     "user@localhost",
		"empty":             "",
		"spaces only":       "   ",
		"no at":             "user.example",
		"display name":      "Bob <bob@x.example>",
		"bad IDN":           "user@xn--zz.example",
		"label over 63":     "user@" + strings.Repeat("a", 64) + ".example",
		"line separator":    "user\u2028@x.example",
		"underscore domain": "user@under_score.example",
	} {
		if e, msg := ParseEmail(s); msg == "" {
			t.Errorf("%s: %q accepted as %+v", name, s, e)
		}
	}
	if _, msg := ParseEmail(strings.Repeat("a", 64) + "@x.example"); msg != "" {
		t.Errorf("a 64-character local part is allowed: %s", msg)
	}
}
