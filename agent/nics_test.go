package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHostNICs reads a sysfs laid out like a GPU server's: two InfiniBand
// ports (one down, with errors), a physical Ethernet interface, and
// virtual ones that do not count.
func TestHostNICs(t *testing.T) {
	root := t.TempDir()
	write := func(path, v string) {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("class/infiniband/mlx5_0/ports/1/state", "4: ACTIVE")
	write("class/infiniband/mlx5_0/ports/1/counters/symbol_error", "0")
	write("class/infiniband/mlx5_1/ports/1/state", "1: DOWN")
	write("class/infiniband/mlx5_1/ports/1/counters/symbol_error", "7")
	write("class/infiniband/mlx5_1/ports/1/counters/link_downed", "2")
	write("class/net/eth0/device/vendor", "0x15b3")
	write("class/net/eth0/operstate", "up")
	write("class/net/eth0/type", "1")
	write("class/net/eth0/statistics/rx_errors", "3")
	write("class/net/eth0/statistics/tx_errors", "1")
	write("class/net/ib0/device/vendor", "0x15b3")
	write("class/net/ib0/type", "32")
	write("class/net/lo/operstate", "unknown")
	write("class/net/eth1/device/vendor", "0x8086") // never cabled
	write("class/net/eth1/operstate", "down")
	write("class/net/eth1/carrier_changes", "0")
	write("class/net/eth2/device/vendor", "0x8086") // lost its link
	write("class/net/eth2/operstate", "down")
	write("class/net/eth2/carrier_changes", "2")
	write("uptime", "12345.67 99999.00")
	got := HostNICs(root)
	want := []struct {
		name string
		up   bool
		errs uint64
	}{{"eth0", true, 4}, {"eth2", false, 0}, {"mlx5_0/1", true, 0}, {"mlx5_1/1", false, 9}}
	if len(got) != len(want) {
		t.Fatalf("NICs: %+v", got)
	}
	for i, w := range want {
		if got[i].Name != w.name || got[i].Up != w.up || got[i].Errors != w.errs {
			t.Fatalf("NIC %d: %+v, want %+v", i, got[i], w)
		}
	}
	if u := HostUptime(root); u != 12345 {
		t.Fatalf("uptime %d", u)
	}
}
