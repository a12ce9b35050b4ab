package cli_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud/cli"
)

// scrape reads a server's /metrics: each series (name and labels, as
// written) and its value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d, %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	line := regexp.MustCompile(`^(neocloud_[a-z_]+(?:\{[^}]*\})?) (\S+)$`)
	for _, l := range strings.Split(string(b), "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			out[m[1]] = v
		}
	}
	return out
}

// TestFleetMetrics: /metrics gives the fleet's nodes and GPUs by site,
// health and lifecycle, the GPUs down (from the console's samples), open
// incidents and repair tickets, and the work this server leads (on
// SQLite, both); a node an operator fails moves between the series.
func TestFleetMetrics(t *testing.T) {
	srv, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DataDir: filepath.Join(t.TempDir(), "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SampleEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	path := filepath.Join(t.TempDir(), "site.yaml")
	if _, errOut, code := run(t, srv.URL, srv.Token, "fleet", "generate", "--site", "m1", "--gpus", "32", "--out", path); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := run(t, srv.URL, srv.Token, "fleet", "apply", "-f", path); code != 0 {
		t.Fatal(errOut)
	}
	m := scrape(t, srv.URL)
	for series, want := range map[string]float64{
		`neocloud_nodes{health="ok",lifecycle="available",site="m1"}`: 4,
		`neocloud_gpus{lifecycle="available",site="m1"}`:              32,
		`neocloud_incidents_open`:                                     0,
		`neocloud_repair_tickets_open`:                                0,
		`neocloud_leader{loop="lifecycle"}`:                           1,
		`neocloud_leader{loop="liveness"}`:                            1,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (listed %v), want %v", series, got, ok, want)
		}
	}
	out, _, _ := run(t, srv.URL, srv.Token, "node", "list", "-o", "json")
	host := regexp.MustCompile(`"hostname": "([^"]+)"`).FindStringSubmatch(out)
	if host == nil {
		t.Fatalf("no node in %s", out)
	}
	if _, errOut, code := run(t, srv.URL, srv.Token, "node", "fail", host[1], "--reason", "smoke from the PSU"); code != 0 {
		t.Fatal(errOut)
	}
	// The console samples the GPUs down every 50 ms here.
	deadline := time.Now().Add(10 * time.Second)
	for m = scrape(t, srv.URL); m[`neocloud_gpus_down`] != 8 && time.Now().Before(deadline); m = scrape(t, srv.URL) {
		time.Sleep(50 * time.Millisecond)
	}
	for series, want := range map[string]float64{
		`neocloud_nodes{health="ok",lifecycle="available",site="m1"}`: 3,
		`neocloud_gpus_down`:           8,
		`neocloud_repair_tickets_open`: 1,
	} {
		if got := m[series]; got != want {
			t.Errorf("after a node failed: %s = %v, want %v", series, got, want)
		}
	}
	failed := 0.0
	for series, v := range m {
		if strings.HasPrefix(series, `neocloud_nodes{health="failed"`) {
			failed += v
		}
	}
	if failed != 1 {
		t.Errorf("failed nodes in the series: %v, want 1 (%v)", failed, m)
	}
}
