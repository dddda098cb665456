package ingress

import (
	"regexp"
	"testing"

	"github.com/seatd/seatd/events"
)

// TestEveryCodeHasAnAnswer: every events.Code (events.Codes, which
// events.TestCodesListsEveryCode keeps complete) has a row in the one
// table, with a status and a name in Polar's style: a PascalCase class
// name, or the authlib error code Polar itself answers. A code without a
// row would silently answer 500; a row without a code is dead.
func TestEveryCodeHasAnAnswer(t *testing.T) {
	pascal := regexp.MustCompile(`^[A-Z][A-Za-z]+$`)
	known := map[events.Code]bool{}
	for _, c := range events.Codes {
		known[c] = true
		a, ok := answers[c]
		switch {
		case !ok:
			t.Errorf("code %s has no row in answers", c)
		case c == events.CodeOK:
			if a.status != 200 || a.name != "" {
				t.Errorf("ok answers %d %q", a.status, a.name)
			}
		case a.status < 400 || a.status > 599:
			t.Errorf("code %s answers status %d", c, a.status)
		case !pascal.MatchString(a.name) && c != events.CodeInsufficientScope:
			t.Errorf("code %s answers %d with error name %q", c, a.status, a.name)
		}
	}
	for c := range answers {
		if !known[c] {
			t.Errorf("answers has a row for %q, which is not in events.Codes", c)
		}
	}
	if a := answerTo("no_such_code"); a.status != 500 || a.name != "InternalServerError" {
		t.Errorf("an unknown code answers %+v", a)
	}
}
