package placement

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPure fails when the placer reaches storage, HTTP or the wall clock.
func TestPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"database/sql", "net/http", "net", "os/exec", "github.com/neocloud/neocloud/sqlstore", "github.com/neocloud/neocloud/httpapi", "github.com/jackc/pgx/v5", "modernc.org/sqlite"} {
			if dep == banned {
				t.Errorf("placement depends on %s", dep)
			}
		}
	}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" && (sel.Sel.Name == "Now" || sel.Sel.Name == "Since") {
					t.Errorf("%s: calls time.%s; the placer takes no clock", fset.Position(sel.Pos()), sel.Sel.Name)
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "rand" {
					t.Errorf("%s: uses package rand; randomness must be seeded and passed in", fset.Position(sel.Pos()))
				}
			}
			return true
		})
	}
}
