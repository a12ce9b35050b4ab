package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestHeartbeatBench runs `neocloud bench heartbeats` small, with a short
// outage, end to end: a server process, agents joining over HTTP,
// heartbeats answered (three agents' pipelined on each connection), the
// server stopped and started again on its store, each of its two runs
// profiled.
func TestHeartbeatBench(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "server.prof")
	out, err := exec.Command(binary(t), "bench", "heartbeats", "--agents", "40", "--for", "1s", "--clients", "4", "--pipeline", "3", "--outage", "1s", "--after", "2s", "--server-cpuprofile", prof).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range []string{prof, prof + ".after"} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b { // a profile is gzipped
			t.Errorf("%s: not a profile (%d bytes, %v)", filepath.Base(f), len(b), err)
		}
	}
	// agents seconds heartbeats per-second p50 p99 max server-cpu
	// of-it-kernel generator-cpu rss failed
	row := regexp.MustCompile(`(?m)^\s+40\s+[\d.]+\s+(\d+)\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+\d+\s+(\d+)\s*$`).FindSubmatch(out)
	if row == nil {
		t.Fatalf("no result row:\n%s", out)
	}
	if n, _ := strconv.Atoi(string(row[1])); n < 40 || string(row[4]) != "0" {
		t.Fatalf("%s heartbeats, %s failed:\n%s", row[1], row[4], out)
	}
	cpu, _ := strconv.ParseFloat(string(row[2]), 64)
	kernel, _ := strconv.ParseFloat(string(row[3]), 64)
	if cpu <= 0 || kernel > cpu {
		t.Fatalf("server CPU %v µs/hb, of it kernel %v:\n%s", cpu, kernel, out)
	}
	// agents outage after heartbeats-after p99 server-cpu core-share
	// failed unreachable. (Two seconds after a start nothing is judged
	// yet: that no node fails a restart is the liveness tests' to show;
	// here, that the agents report again, and what the server spent on
	// them.)
	after := regexp.MustCompile(`(?m)^\s+40\s+1\s+2\s+(\d+)\s+([\d.]+)\s+[\d.]+\s+([\d.]+)\s+\d+\s+\d+\s*$`).FindSubmatch(out)
	if after == nil || string(after[1]) == "0" {
		t.Fatalf("after the outage:\n%s", out)
	}
	if p99, _ := strconv.ParseFloat(string(after[2]), 64); p99 <= 0 {
		t.Fatalf("p99 after the outage %v ms:\n%s", p99, out)
	}
	if share, _ := strconv.ParseFloat(string(after[3]), 64); share < 0 || share > 100*float64(runtime.NumCPU()) {
		t.Fatalf("the server used %v%% of a core on %d cores:\n%s", share, runtime.NumCPU(), out)
	}
}

// Sizes the bench cannot honour are refused, naming the flag: more
// requests in flight than agents, more relays than connections.
func TestHeartbeatBenchPipelineBound(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--agents", "40", "--clients", "4", "--pipeline", "11"}, "--pipeline"},
		{[]string{"--agents", "40", "--clients", "4", "--relays", "5"}, "--relays"},
		{[]string{"--agents", "40", "--clients", "4", "--relays", "2", "--relay-conns", "0"}, "--relay-conns"},
	} {
		out, err := exec.Command(binary(t), append([]string{"bench", "heartbeats"}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.flag) {
			t.Errorf("%v: %v\n%s", tc.args, err, out)
		}
	}
}

// TestHeartbeatBenchThroughRelays: with --relays the bench's connections
// go to relay processes, which carry every heartbeat to the server, and
// go on carrying them once the server has stopped and started again.
func TestHeartbeatBenchThroughRelays(t *testing.T) {
	out, err := exec.Command(binary(t), "bench", "heartbeats", "--agents", "40", "--for", "1s", "--clients", "8", "--relays", "2", "--relay-conns", "1", "--outage", "1s", "--after", "2s").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// … server-cpu of-it-kernel relay-cpu generator-cpu rss failed
	row := regexp.MustCompile(`(?m)^\s+40\s+[\d.]+\s+(\d+)\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s+\d+\s+(\d+)\s*$`).FindSubmatch(out)
	if row == nil {
		t.Fatalf("no result row with a relay column:\n%s", out)
	}
	if string(row[3]) != "0" {
		t.Fatalf("%s failed:\n%s", row[3], out)
	}
	if cpu, _ := strconv.ParseFloat(string(row[2]), 64); cpu <= 0 {
		t.Errorf("the relays spent %v µs a heartbeat:\n%s", cpu, out)
	}
	relayed := 0
	for _, m := range regexp.MustCompile(`(?m)^relay \d: relayed (\d+) heartbeats in (\d+) batches`).FindAllSubmatch(out, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		relayed += n
	}
	after := regexp.MustCompile(`(?m)^\s+40\s+1\s+2\s+(\d+)\s`).FindSubmatch(out)
	if after == nil || string(after[1]) == "0" {
		t.Fatalf("no heartbeats after the outage:\n%s", out)
	}
	before, _ := strconv.Atoi(string(row[1]))
	sentAfter, _ := strconv.Atoi(string(after[1]))
	if relayed != before+sentAfter || before < 40 {
		t.Errorf("the relays carried %d heartbeats of the %d + %d answered:\n%s", relayed, before, sentAfter, out)
	}
}
