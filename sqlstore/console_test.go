package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

// The utilization series: newest points, oldest first; old points go.
func TestUsePoints(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range 5 {
			if err := db.PutUsePoint(ctx, t0.Add(time.Duration(i)*time.Hour), fmt.Appendf(nil, `{"n":%d}`, i), 3*time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		// The same instant again replaces its point.
		if err := db.PutUsePoint(ctx, t0.Add(4*time.Hour), []byte(`{"n":40}`), 3*time.Hour); err != nil {
			t.Fatal(err)
		}
		got, err := db.UsePoints(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, b := range got {
			s = append(s, string(b))
		}
		if fmt.Sprint(s) != `[{"n":1} {"n":2} {"n":3} {"n":40}]` {
			t.Fatalf("points: %v", s)
		}
		if got, _ := db.UsePoints(ctx, 2); len(got) != 2 || string(got[1]) != `{"n":40}` {
			t.Fatalf("newest two: %q", got)
		}
	})
}
