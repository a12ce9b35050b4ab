package sqlstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

// TestTicketPages: repair tickets page newest first by cursor, filtered by
// node and by closed or not, and are counted by the same filter.
func TestTicketPages(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		ns := rackOfNodes(t, db, "tk", 2)
		// Five tickets, oldest first: node 0's closed, then open ones
		// alternating between the nodes.
		var ids []string
		for i := range 5 {
			tk := agents.RepairTicket{ID: neocloud.NewID("rpr_"), NodeID: ns[i%2].ID, State: agents.TicketOpen, Reasons: []string{"XID 79"},
				OpenedAt: t0.Add(time.Duration(i) * time.Minute), UpdatedAt: t0}
			if i == 0 {
				closed := t0.Add(time.Hour)
				tk.State, tk.ClosedAt = agents.TicketClosed, &closed
			}
			if err := db.InsertTicket(ctx, tk); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tk.ID)
		}
		open, closed := false, true
		all := func(f agents.TicketFilter, limit int) []string {
			t.Helper()
			var out []string
			pg := neocloud.Page{Limit: limit}
			for range 10 {
				ts, err := db.TicketPage(ctx, f, pg)
				if err != nil {
					t.Fatal(err)
				}
				for _, tk := range ts {
					out = append(out, tk.ID)
				}
				if len(ts) < limit {
					return out
				}
				pg.Cursor = neocloud.EncodeCursor(ts[len(ts)-1].ID)
			}
			t.Fatal("pages do not end")
			return nil
		}
		count := func(f agents.TicketFilter) int {
			t.Helper()
			n, err := db.CountTickets(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		for _, c := range []struct {
			name string
			f    agents.TicketFilter
			want []string
		}{
			{"all", agents.TicketFilter{}, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}},
			{"open", agents.TicketFilter{Closed: &open}, []string{ids[4], ids[3], ids[2], ids[1]}},
			{"closed", agents.TicketFilter{Closed: &closed}, []string{ids[0]}},
			{"node 1's open", agents.TicketFilter{NodeID: ns[1].ID, Closed: &open}, []string{ids[3], ids[1]}},
		} {
			if got := all(c.f, 2); !slices.Equal(got, c.want) || count(c.f) != len(c.want) {
				t.Errorf("%s: %v (%d counted), want %v", c.name, got, count(c.f), c.want)
			}
		}
	})
}
