package cli

import (
	"fmt"
	"os"
	"os/signal"
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
	cmd := &cobra.Command{Use: "agent", Short: "Run the node agent: join with a site join token, then report this node's GPUs", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Server, o.Log = g.server, g.stderr
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
				o.GPUs = agent.NewSimulated(simulate, sku.GPUModel, sku.GPUMemoryMiB, float64(sku.NodeMaxPowerW)/float64(max(1, sku.GPUsPerNode))*0.7)
			} else {
				g, err := nvmlgpu.OpenDefault()
				if err != nil {
					return err // says plainly that the library is missing
				}
				defer g.Close()
				o.GPUs = g
			}
			ctx, cancel := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			fmt.Fprintf(g.stderr, "agent %s for %s, reporting to %s every %v\n", agent.Version, o.Hostname, o.Server, o.Interval)
			for _, gpu := range o.GPUs.Info() {
				fmt.Fprintf(g.stderr, "gpu %d: %s %s (%d MiB)\n", gpu.Index, gpu.Model, gpu.UUID, gpu.MemoryMiB)
			}
			return agent.Run(ctx, o)
		}}
	cmd.Flags().StringVar(&o.JoinToken, "join-token", os.Getenv("NEOCLOUD_JOIN_TOKEN"), "site join token (first start only; NEOCLOUD_JOIN_TOKEN)")
	cmd.Flags().StringVar(&o.Hostname, "hostname", "", "the node's hostname (default: this machine's)")
	cmd.Flags().StringVar(&o.Serial, "serial", "", "the node's serial number")
	cmd.Flags().StringVar(&o.StateDir, "state-dir", "./neocloud-agent", "where the node's credential and sequence number are kept")
	cmd.Flags().DurationVar(&o.Interval, "interval", 10*time.Second, "heartbeat interval")
	cmd.Flags().IntVar(&simulate, "simulate-gpus", 0, "simulate this many GPUs instead of reading them through NVML")
	cmd.Flags().StringVar(&skuName, "sku", "h100-sxm5-80gb", "SKU of the simulated GPUs")
	cmd.Flags().StringVar(&o.ChecksDir, "checks-dir", "", "directory of host checks (executables; non-zero exit fails the check)")
	cmd.Flags().StringVar(&o.NoticeAddr, "notices-addr", "127.0.0.1:8777", "where to serve the node-local notices endpoint (GET /notices); empty: none")
	return cmd
}
