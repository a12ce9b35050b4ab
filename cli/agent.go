package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agent"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/nvmlgpu"
)

func agentCmd(g *globals) *cobra.Command {
	var o agent.Options
	var simulate int
	var skuName string
	var burnIn time.Duration
	var burnInFail float64
	cmd := &cobra.Command{Use: "agent", Short: "Run the node agent: join with a site join token, then report this node's GPUs", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Server, o.Log = g.server, g.stderr
			if o.JoinToken == "" {
				// Read here, not as the flag's default: help would print it.
				o.JoinToken = os.Getenv("NEOCLOUD_JOIN_TOKEN")
			}
			if o.Hostname == "" {
				h, err := os.Hostname()
				if err != nil {
					return err
				}
				o.Hostname = h
			}
			if simulate > 0 {
				sku, ok := fleet.CatalogSKU(skuName)
				if !ok {
					return neocloud.Invalid("--sku", "unknown SKU %q", skuName)
				}
				sim := agent.NewSimulated(simulate, sku.GPUModel, sku.GPUMemoryMiB, sku.MaxGPUPowerW())
				sim.Host = o.Hostname
				sim.SetBurnIn(burnIn, burnInFail)
				o.GPUs = sim
			} else {
				g, err := nvmlgpu.OpenDefault()
				if err != nil {
					return err // says plainly that the library is missing
				}
				defer g.Close()
				o.GPUs = g
				o.HostRoot = "/sys"
			}
			ctx, cancel := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			fmt.Fprintf(g.stderr, "agent %s for %s, reporting to %s every %v\n", agent.Version, o.Hostname, o.Server, o.Interval)
			for _, gpu := range o.GPUs.Info() {
				fmt.Fprintf(g.stderr, "gpu %d: %s %s (%d MiB)\n", gpu.Index, gpu.Model, gpu.UUID, gpu.MemoryMiB)
			}
			return agent.Run(ctx, o)
		}}
	cmd.Flags().StringVar(&o.JoinToken, "join-token", "", "site join token (first start only; default NEOCLOUD_JOIN_TOKEN)")
	cmd.Flags().StringVar(&o.Hostname, "hostname", "", "the node's hostname (default: this machine's)")
	cmd.Flags().StringVar(&o.Serial, "serial", "", "the node's serial number")
	cmd.Flags().StringVar(&o.StateDir, "state-dir", "./neocloud-agent", "where the node's credential and sequence number are kept")
	cmd.Flags().DurationVar(&o.Interval, "interval", 10*time.Second, "heartbeat interval")
	cmd.Flags().IntVar(&simulate, "simulate-gpus", 0, "simulate this many GPUs instead of reading them through NVML")
	cmd.Flags().StringVar(&skuName, "sku", "h100-sxm5-80gb", "SKU of the simulated GPUs")
	cmd.Flags().StringVar(&o.ChecksDir, "checks-dir", "", "directory of host checks (executables; non-zero exit fails the check)")
	cmd.Flags().StringVar(&o.NoticeAddr, "notices-addr", "127.0.0.1:8777", "where to serve the node-local notices endpoint (GET /notices; with simulated GPUs also POST /faults); empty: none")
	cmd.Flags().DurationVar(&burnIn, "sim-burn-in", 30*time.Second, "how long a simulated burn-in takes")
	cmd.Flags().Float64Var(&burnInFail, "sim-burn-in-fail-rate", 0, "chance a simulated burn-in fails on healthy GPUs")
	cmd.Flags().StringVar(&o.BurnInCommand, "burn-in-command", "", "command a burn-in runs (e.g. \"dcgmi diag -r 3\"); default: the simulated GPUs' own, or a check that every GPU answers")
	cmd.Flags().StringVar(&o.SanitizeCommand, "sanitize-command", "", "command that wipes a real node for its next tenant (without it, a real node's sanitize fails)")
	cmd.Flags().StringVar(&o.ResetCommand, "gpu-reset-command", "", "command a GPU reset runs on a real node")
	cmd.Flags().StringVar(&o.RebootCommand, "reboot-command", "", "command a reboot runs on a real node")
	cmd.AddCommand(injectCmd(g))
	return cmd
}

// injectCmd injects a fault into a simulated agent through its node-local
// endpoint.
func injectCmd(g *globals) *cobra.Command {
	var at string
	var f agent.Fault
	cmd := &cobra.Command{Use: "inject --gpu N [--xid CODE] [--lost] [--ecc N] [--hot] [--link-down|--link-up] [--row-remap|--remap-failed] [--crash]",
		Short: "Inject a fault into a simulated node's agent (through its node-local endpoint)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			b, _ := json.Marshal(f)
			req, err := http.NewRequestWithContext(c.Context(), http.MethodPost, "http://"+at+"/faults", bytes.NewReader(b))
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				msg, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("the agent refused the fault: %s", strings.TrimSpace(string(msg)))
			}
			fmt.Fprintf(g.stdout, "injected into the agent at %s: %s\n", at, b)
			return nil
		}}
	cmd.Flags().StringVar(&at, "at", "127.0.0.1:8777", "the agent's node-local endpoint")
	cmd.Flags().IntVar(&f.GPU, "gpu", 0, "GPU index")
	cmd.Flags().IntVar(&f.XID, "xid", 0, "an XID event with this code")
	cmd.Flags().BoolVar(&f.Lost, "lost", false, "the GPU falls off the bus")
	cmd.Flags().Uint64Var(&f.ECC, "ecc", 0, "uncorrected ECC errors")
	cmd.Flags().BoolVar(&f.Hot, "hot", false, "thermal runaway")
	cmd.Flags().BoolVar(&f.LinkDown, "link-down", false, "the GPU's NIC loses its link")
	cmd.Flags().BoolVar(&f.LinkUp, "link-up", false, "the GPU's NIC gets its link back")
	cmd.Flags().BoolVar(&f.RowRemap, "row-remap", false, "an HBM row remap waits for a reset")
	cmd.Flags().BoolVar(&f.RemapFailed, "remap-failed", false, "an HBM row remap failed")
	cmd.Flags().BoolVar(&f.Crash, "crash", false, "the agent crashes after its next delivered report")
	return cmd
}
