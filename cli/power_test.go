package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLISupplyMeters: supply-meter readings from a CSV are stored and
// reconciled in the site's report; a reading of a meter the site does not
// have refuses the file, naming the field, and stores nothing.
func TestCLISupplyMeters(t *testing.T) {
	srv := startServer(t)
	op := srv.Token
	must := func(args ...string) string { t.Helper(); return mustRun(t, srv.URL, op, args...) }
	applySite(t, srv.URL, op, 1, 1, 1, 8)
	dir := t.TempDir()

	h := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	period := h.Format("2006") // the year: both hours fall in it but at New Year
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, fmt.Appendf(nil, "feed,hour,wh\nfeed-1,%s,1000\nfeed-9,%s,1000\n", h.Format(time.RFC3339), h.Format(time.RFC3339)), 0o644)
	if _, errOut, code := run(t, srv.URL, op, "site", "feed-readings", "colossus-1", "--file", bad); code == 0 || !strings.Contains(errOut, "readings[1].feed") {
		t.Fatalf("a reading of no such feed: exit %d: %s", code, errOut)
	}
	good := filepath.Join(dir, "good.csv")
	os.WriteFile(good, fmt.Appendf(nil, "feed,hour,wh\nfeed-1,%s,1000\nfeed-1,%s,2000\n", h.Format(time.RFC3339), h.Add(time.Hour).Format(time.RFC3339)), 0o644)
	if out := must("site", "feed-readings", "colossus-1", "--file", good); !strings.Contains(out, "2") {
		t.Fatalf("stored: %s", out)
	}
	out := must("emissions", "report", "--site", "colossus-1", "--period", period)
	if !strings.Contains(out, "supply meters, 2 hours: metered 3000 Wh") {
		t.Fatalf("the report does not reconcile the readings:\n%s", out)
	}
}
