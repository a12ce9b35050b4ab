package main_test

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoCommandStartsAndStopsOnCtrlC runs `neocloud demo` as a user
// does: its first line holding a URL is exactly the console's, the tokens
// follow, the console answers, and an interrupt stops it cleanly (exit 0,
// its temporary store removed).
func TestDemoCommandStartsAndStopsOnCtrlC(t *testing.T) {
	cmd := exec.Command(binary(t), "demo", "--listen", "127.0.0.1:0", "--gpus", "512")
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the demo stopped printing")
			}
			return l
		case <-time.After(60 * time.Second):
			t.Fatal("the demo printed nothing for 60 s")
		}
		return ""
	}
	first := next()
	for !strings.Contains(first, "://") {
		first = next()
	}
	m := regexp.MustCompile(`^console: (http://127\.0\.0\.1:\d+)/$`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first line with a URL: %q", first)
	}
	if l := next(); !regexp.MustCompile(`^operator token: nct_\S+$`).MatchString(l) {
		t.Fatalf("second line: %q", l)
	}
	if l := next(); !regexp.MustCompile(`^tenant token \(acme, tenant-admin\): nct_\S+$`).MatchString(l) {
		t.Fatalf("third line: %q", l)
	}
	resp, err := http.Get(m[1] + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `id="token"`) {
		t.Fatalf("console /: %d %.200s", resp.StatusCode, body)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop within 30 s of Ctrl-C")
	}
	left, _ := os.ReadDir(tmp)
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "neocloud-demo-") {
			t.Errorf("the demo left its temporary store: %s", e.Name())
		}
	}
}
