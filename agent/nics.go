package agent

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/neocloud/neocloud/wire"
)

// HostNICs reads a real node's network links under sysfs root ("/sys"):
// every InfiniBand port (state ACTIVE is up; errors are the port's symbol,
// receive and link-down counters) and every physical Ethernet interface
// that has had a link (operstate up; errors are its receive and transmit
// errors).
func HostNICs(root string) []wire.NICSample {
	var out []wire.NICSample
	ibs, _ := filepath.Glob(filepath.Join(root, "class", "infiniband", "*", "ports", "*"))
	for _, port := range ibs {
		dev := filepath.Base(filepath.Dir(filepath.Dir(port)))
		state := readTrim(filepath.Join(port, "state")) // e.g. "4: ACTIVE"
		var errs uint64
		for _, c := range []string{"symbol_error", "port_rcv_errors", "link_downed", "link_error_recovery"} {
			errs += readUint(filepath.Join(port, "counters", c))
		}
		out = append(out, wire.NICSample{Name: dev + "/" + filepath.Base(port), Up: strings.HasSuffix(state, "ACTIVE"), Errors: errs})
	}
	nets, _ := filepath.Glob(filepath.Join(root, "class", "net", "*"))
	for _, n := range nets {
		if _, err := os.Stat(filepath.Join(n, "device")); err != nil {
			continue // virtual: loopback, bridges, veth
		}
		if _, err := os.Stat(filepath.Join(n, "type")); err == nil && readTrim(filepath.Join(n, "type")) == "32" {
			continue // IPoIB: its port is counted above
		}
		up := readTrim(filepath.Join(n, "operstate")) == "up"
		if !up && readUint(filepath.Join(n, "carrier_changes")) == 0 {
			continue // never had a link: a port nobody cabled
		}
		errs := readUint(filepath.Join(n, "statistics", "rx_errors")) + readUint(filepath.Join(n, "statistics", "tx_errors"))
		out = append(out, wire.NICSample{Name: filepath.Base(n), Up: up, Errors: errs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func readUint(path string) uint64 {
	v, _ := strconv.ParseUint(readTrim(path), 10, 64)
	return v
}

// HostUptime is the node's own uptime in seconds (Linux), or -1.
func HostUptime(root string) int64 {
	f := strings.Fields(readTrim(filepath.Join(root, "uptime")))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return int64(v)
}
