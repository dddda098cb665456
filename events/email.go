package events

import (
	"net/mail"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Address limits (RFC 5321 §4.5.3.1).
const (
	MaxLocalPart = 64
)

// idnaProfile maps a domain for lookup (case-folded, NFC, UTS #46) and
// converts it to ASCII, refusing what DNS cannot hold.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.VerifyDNSLength(true))

// Email is an address as typed (for display and for sending) and its key:
// the one form used to compare addresses and to keep them unique.
type Email struct {
	Display string // what the user typed, without surrounding spaces
	Key     string // lower-case local part @ ASCII (IDNA) lower-case domain
}

// ParseEmail checks an address and returns it with its key, or why it
// cannot be an address. One mailbox has one key: "user@bücher.example",
// "user@xn--bcher-kva.example", "User@BÜCHER.example" and " user@bücher.example "
// all key to "user@xn--bcher-kva.example". Local parts are compared without
// case, as customers were matched before.
func ParseEmail(s string) (Email, string) {
	if !utf8.ValidString(s) {
		return Email{}, "the address is not valid UTF-8"
	}
	// Control characters (CR and LF above all: header injection) are refused
	// anywhere, even where trimming would have removed them.
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 || r == utf8.RuneError {
			return Email{}, "the address contains invalid characters"
		}
	}
	s = strings.Trim(s, " ")
	if s == "" {
		return Email{}, "an email address must have an @-sign"
	}
	if len(s) > MaxEmailLength {
		return Email{}, "the address is too long"
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return Email{}, "not a plain address of the form name@example.com"
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	if len(local) > MaxLocalPart {
		return Email{}, "the part before the @-sign is longer than 64 characters"
	}
	for _, r := range s {
		if r == ' ' {
			return Email{}, "the address contains invalid characters"
		}
	}
	if strings.HasPrefix(domain, "[") {
		return Email{}, "address literals such as user@[192.0.2.1] are not accepted"
	}
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return Email{}, "the part after the @-sign is not a valid domain"
	}
	ascii, err := idnaProfile.ToASCII(domain)
	if err != nil || !strings.Contains(ascii, ".") {
		return Email{}, "the part after the @-sign is not a valid domain"
	}
	key := strings.ToLower(local) + "@" + ascii
	if len(key) > MaxEmailLength {
		return Email{}, "the address is too long"
	}
	return Email{Display: s, Key: key}, ""
}

// EmailKey is the key of an address ParseEmail accepts, or the trimmed,
// lower-cased text for one it refuses (so a lookup simply finds nothing).
func EmailKey(s string) string {
	if e, msg := ParseEmail(s); msg == "" {
		return e.Key
	}
	return strings.ToLower(strings.TrimSpace(s))
}
