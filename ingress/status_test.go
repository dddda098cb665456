package ingress

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"testing"

	"github.com/seatd/seatd/events"
)

// TestEveryCodeHasAnAnswer: every events.Code declared in events (read
// from its source, so a code added later is covered) has a row in the one
// table, with a status and a name in Polar's style: a PascalCase class
// name, or the authlib error code Polar itself answers.
func TestEveryCodeHasAnAnswer(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../events/message.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []events.Code
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || vs.Type == nil || len(vs.Values) != 1 {
			return true
		}
		if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "Code" {
			v, err := strconv.Unquote(vs.Values[0].(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			codes = append(codes, events.Code(v))
		}
		return true
	})
	if len(codes) < 20 {
		t.Fatalf("found only %d codes in events/message.go", len(codes))
	}
	pascal := regexp.MustCompile(`^[A-Z][A-Za-z]+$`)
	for _, c := range codes {
		a, ok := answers[c]
		switch {
		case !ok:
			t.Errorf("code %s has no row in answers", c)
		case c == events.CodeOK:
			if a.status != 200 {
				t.Errorf("ok answers %d", a.status)
			}
		case a.status < 400 || (!pascal.MatchString(a.name) && c != events.CodeInsufficientScope):
			t.Errorf("code %s answers %d %q", c, a.status, a.name)
		}
	}
	if a := answerTo("no_such_code"); a.status != 500 || a.name != "InternalServerError" {
		t.Errorf("an unknown code answers %+v", a)
	}
}
