package main_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/internal/testdb"
)

// procKiB reads a VmXXX field of /proc/PID/status in KiB.
func procKiB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			var kib int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib)
			return kib
		}
	}
	return -1
}

// TestScaleServer generates a 196,608-GPU Colossus spec with the CLI,
// applies it to a real server process twice, pages through every node 500
// at a time, and logs apply time, peak and final RSS and list latency.
// Opt-in with NEOCLOUD_SCALE=1 (.ci/run sets it).
func TestScaleServer(t *testing.T) {
	if os.Getenv("NEOCLOUD_SCALE") != "1" {
		t.Skip("set NEOCLOUD_SCALE=1 to run the 196,608-GPU server test")
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			args := []string{"--data-dir", t.TempDir()}
			if engine == "postgres" {
				args = []string{"--database-url", testdb.PostgresURL(t)}
			}
			cmd, srvURL := startServer(t, args...)
			pid := cmd.Process.Pid
			cli := func(a ...string) string {
				t.Helper()
				c := exec.Command(binary(t), append([]string{"--server", srvURL, "--token", bootstrap}, a...)...)
				out, err := c.CombinedOutput()
				if err != nil {
					t.Fatalf("neocloud %s: %v\n%s", strings.Join(a, " "), err, out)
				}
				return string(out)
			}
			spec := filepath.Join(t.TempDir(), "colossus.yaml")
			cli("fleet", "generate", "--gpus", "196608", "--sku", "h100-sxm5-80gb", "--out", spec)
			t0 := time.Now()
			out := cli("fleet", "apply", "-f", spec)
			apply := time.Since(t0)
			if !strings.Contains(out, "24576 added, 0 changed, 0 retired") {
				t.Fatalf("first apply: %s", out)
			}
			peak := procKiB(pid, "VmHWM")
			t1 := time.Now()
			out = cli("fleet", "apply", "-f", spec)
			reapply := time.Since(t1)
			if !strings.Contains(out, "0 added, 0 changed, 0 retired") {
				t.Fatalf("second apply: %s", out)
			}

			c := client.New(srvURL, bootstrap)
			var lat []time.Duration
			total, cursor := 0, ""
			for {
				q := url.Values{"site": {"colossus-1"}, "limit": {"500"}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				var page struct {
					Items      []struct{ ID string } `json:"items"`
					NextCursor string                `json:"next_cursor"`
				}
				s := time.Now()
				if err := c.Do(context.Background(), http.MethodGet, "/v1/nodes", q, nil, &page); err != nil {
					t.Fatal(err)
				}
				lat = append(lat, time.Since(s))
				total += len(page.Items)
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			if total != 24576 {
				t.Errorf("paged %d nodes, want 24576", total)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))].Round(10 * time.Microsecond) }
			t.Logf("%s: apply %v (peak RSS %d MiB), re-apply %v; GET /v1/nodes?site=colossus-1&limit=500 over %d pages: p50 %v p99 %v; server RSS after %d MiB (peak %d MiB)",
				engine, apply.Round(time.Millisecond), peak/1024, reapply.Round(time.Millisecond), len(lat), p(0.5), p(0.99), procKiB(pid, "VmRSS")/1024, procKiB(pid, "VmHWM")/1024)
		})
	}
}
