package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/neocloud/neocloud"
)

// TestTablesShowMoney: a table shows money in micro-units as money, under
// its header without "µ"; csv keeps the micros exactly, even past 2^53.
func TestTablesShowMoney(t *testing.T) {
	raw := []json.RawMessage{json.RawMessage(`{"id":"ctr_1","terms":{"commitment_micros":192828134400000},"power_w":660.8,"reasons":["gpu 3: XID 79","gpu 3: lost"]}`),
		json.RawMessage(`{"id":"ctr_2","terms":{"commitment_micros":9007199254740993},"power_w":12,"reasons":[1,"a"]}`)}
	cols := []column{{"ID", "id"}, {"COMMITMENT µ", "terms.commitment_micros"}, {"POWER W", "power_w"}, {"REASONS", "reasons"}}
	var table, csv bytes.Buffer
	if err := printItems(&table, "table", raw, false, cols); err != nil {
		t.Fatal(err)
	}
	if err := printItems(&csv, "csv", raw, false, cols); err != nil {
		t.Fatal(err)
	}
	// A list of strings reads as its strings; any other list as JSON.
	wantTable := "ID     COMMITMENT         POWER W  REASONS\nctr_1  192828134.40       660.8    gpu 3: XID 79; gpu 3: lost\nctr_2  9007199254.740993  12       [1,\"a\"]\n"
	if got := table.String(); got != wantTable {
		t.Errorf("table:\n%s\nwant:\n%s", got, wantTable)
	}
	wantCSV := "id,terms.commitment_micros,power_w,reasons\nctr_1,192828134400000,660.8,\"[\"\"gpu 3: XID 79\"\",\"\"gpu 3: lost\"\"]\"\nctr_2,9007199254740993,12,\"[1,\"\"a\"\"]\"\n"
	if got := csv.String(); got != wantCSV {
		t.Errorf("csv:\n%s\nwant:\n%s", got, wantCSV)
	}
	if strings.Contains(table.String(), "µ") {
		t.Errorf("a money header kept its µ")
	}
}

// A conflict names the current state once, whether or not the server's
// detail already does.
func TestDescribeNamesTheStateOnce(t *testing.T) {
	for _, c := range []struct{ msg, want string }{
		{"node n1 has no open repair ticket (current state: burn_in)", "conflict: node n1 has no open repair ticket (current state: burn_in)"},
		{"node n1 has no open repair ticket", "conflict: node n1 has no open repair ticket (current state: burn_in)"},
	} {
		if got := describe(&neocloud.Error{Kind: neocloud.KindConflict, Message: c.msg, State: "burn_in"}); got != c.want {
			t.Errorf("describe(%q) = %q, want %q", c.msg, got, c.want)
		}
	}
}
