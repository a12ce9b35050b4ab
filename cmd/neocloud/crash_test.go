package main_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/neocloud/neocloud/audit"
	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the neocloud command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "neocloud-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "neocloud")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

const bootstrap = "crash-test-bootstrap-token-0123456789"

var urlRE = regexp.MustCompile(`listening on (http://[0-9.:]+)`)

// startServer starts a server process and waits for its URL.
func startServer(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"server", "--listen", "127.0.0.1:0", "--idempotency-lease", "1s"}, args...)...)
	cmd.Env = append(os.Environ(), "NEOCLOUD_BOOTSTRAP_TOKEN="+bootstrap)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case u := <-found:
		return cmd, u
	case <-time.After(30 * time.Second):
		t.Fatal("server did not print its URL within 30s")
	}
	return nil, ""
}

// TestKill9LosesNoAcknowledgedWrite streams tenant creations over HTTP from
// several writers, kills the server with SIGKILL mid-stream, restarts it on
// the same store, and checks that every acknowledged write is there, that a
// retry of each unanswered request (same Idempotency-Key) has exactly one
// effect, that the audit chain verifies and (SQLite) the file is intact.
func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			var storeArgs []string
			var dbPath string
			if engine == "sqlite" {
				dir := t.TempDir()
				storeArgs = []string{"--data-dir", dir}
				dbPath = filepath.Join(dir, "neocloud.db")
			} else {
				storeArgs = []string{"--database-url", testdb.PostgresURL(t)}
			}
			var (
				mu     sync.Mutex
				acked  = map[string]bool{}
				unsure = map[string]string{} // name → idempotency key of an unanswered request
				seq    atomic.Int64
			)
			const cycles, writers = 3, 6
			for cycle := 0; cycle < cycles; cycle++ {
				cmd, url := startServer(t, storeArgs...)
				c := client.New(url, bootstrap)
				c.Retries = -1 // no retries: a failed request stays unanswered
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for ctx.Err() == nil {
							name := fmt.Sprintf("crash-%d", seq.Add(1))
							key := client.NewKey()
							_, err := c.Raw(ctx, http.MethodPost, "/v1/tenants", nil, map[string]string{"name": name}, key)
							mu.Lock()
							if err == nil {
								acked[name] = true
							} else {
								unsure[name] = key
							}
							mu.Unlock()
						}
					}()
				}
				// Let writes flow, then kill without warning.
				deadline := time.Now().Add(10 * time.Second)
				for {
					mu.Lock()
					n := len(acked)
					mu.Unlock()
					if n >= (cycle+1)*60 || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				cmd.Wait()
				cancel()
				wg.Wait()
			}

			// Restart and check.
			last, url := startServer(t, storeArgs...)
			c := client.New(url, bootstrap)
			ctx := context.Background()
			present := map[string]bool{}
			cursor := ""
			for {
				var page struct {
					Items []struct {
						Name string `json:"name"`
					} `json:"items"`
					NextCursor string `json:"next_cursor"`
				}
				q := map[string][]string{"limit": {"1000"}}
				if cursor != "" {
					q["cursor"] = []string{cursor}
				}
				if err := c.Do(ctx, http.MethodGet, "/v1/tenants", q, nil, &page); err != nil {
					t.Fatal(err)
				}
				for _, it := range page.Items {
					present[it.Name] = true
				}
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			lost := 0
			for name := range acked {
				if !present[name] {
					lost++
				}
			}
			if lost > 0 {
				t.Errorf("%d of %d acknowledged writes lost", lost, len(acked))
			}
			// A retry of an unanswered request has exactly one effect: it
			// creates the tenant or replays the first answer, never "exists".
			time.Sleep(1100 * time.Millisecond) // in-flight leases of the dead server run out
			c.Retries = 5
			for name, key := range unsure {
				if _, err := c.Raw(ctx, http.MethodPost, "/v1/tenants", nil, map[string]string{"name": name}, key); err != nil {
					t.Errorf("retry of unanswered %s with its key: %v", name, err)
				}
			}
			var v audit.Verification
			if err := c.Do(ctx, http.MethodGet, "/v1/audit/verify", nil, nil, &v); err != nil || !v.OK {
				t.Errorf("audit verify after crashes: %+v %v", v, err)
			}
			t.Logf("%s: %d acknowledged, %d unanswered retried, %d cycles of kill -9", engine, len(acked), len(unsure), cycles)
			if len(acked) < cycles*10 {
				t.Errorf("only %d writes acknowledged: the test did not exercise the server", len(acked))
			}
			if dbPath != "" {
				// A SQLite database is open in one process at a time.
				last.Process.Kill()
				last.Wait()
				db, err := sqlstore.Open(ctx, dbPath)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				var res string
				if err := db.RawDB().QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
					t.Errorf("integrity_check = %q, %v", res, err)
				}
			}
		})
	}
}
