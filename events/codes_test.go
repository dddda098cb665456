package events

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"strings"
	"testing"
)

// TestCodesListsEveryCode: Codes holds every constant of type Code
// declared in the package (type-checked from the source, so a code added in
// any file, in any form, is seen), each once, and no value twice.
func TestCodesListsEveryCode(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// Imports are left unresolved (the errors are ignored): constants of
	// type Code need none of them.
	conf := types.Config{Error: func(error) {}}
	pkg, _ := conf.Check("github.com/seatd/seatd/events", fset, files, nil)
	code := pkg.Scope().Lookup("Code")
	if code == nil {
		t.Fatal("no type Code in package events")
	}
	declared := map[Code]string{}
	for _, name := range pkg.Scope().Names() {
		c, ok := pkg.Scope().Lookup(name).(*types.Const)
		if !ok || !types.Identical(c.Type(), code.Type()) {
			continue
		}
		v := Code(strings.Trim(c.Val().ExactString(), `"`))
		if other, dup := declared[v]; dup {
			t.Errorf("%s and %s are both %q", other, name, v)
		}
		declared[v] = name
	}
	if len(declared) < 20 {
		t.Fatalf("found only %d Code constants: %v", len(declared), declared)
	}
	listed := map[Code]bool{}
	for _, c := range Codes {
		if listed[c] {
			t.Errorf("Codes lists %q twice", c)
		}
		listed[c] = true
		if _, ok := declared[c]; !ok {
			t.Errorf("Codes lists %q, which no constant declares", c)
		}
	}
	for v, name := range declared {
		if !listed[v] {
			t.Errorf("%s (%q) is missing from Codes", name, v)
		}
	}
}
