package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud/sim"
)

func simCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sim", Short: "Offline what-if runs of the control plane over simulated time"}
	var o sim.Options
	var cpuprofile string
	hybrid := &cobra.Command{Use: "hybrid", Short: "A simulated month of leases, reserved, on-demand and spot work with internal training backfilling: reclaim waits and the hybrid report", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Progress = g.stderr
			return profiled(cpuprofile, func() error { return sim.Hybrid(c.Context(), g.stdout, o) })
		}}
	hybrid.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	hybrid.Flags().IntVar(&o.GPUs, "gpus", 8192, "site size in GPUs")
	hybrid.Flags().IntVar(&o.Days, "days", 30, "simulated days")
	hybrid.Flags().Uint64Var(&o.Seed, "seed", 1, "seed of the arrivals")
	hybrid.Flags().DurationVar(&o.Step, "step", 5*time.Minute, "lifecycle cadence in simulated time")
	cmd.AddCommand(hybrid)
	return cmd
}
