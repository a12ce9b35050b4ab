package demo

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud/cli"
)

// Command is `neocloud demo`.
func Command() *cobra.Command {
	var o Options
	var cpuprofile string
	cmd := &cobra.Command{Use: "demo", Short: "Run a living GPU site in one process and watch it in the console (no set-up)", Args: cobra.NoArgs,
		Long: `Runs the server on the embedded store, a generated site with a simulated agent per node, an accelerated clock,
seeded tenants and contracts, customers coming and going, internal training, failures and repairs.
The first line with a URL is the console's; the operator and tenant tokens follow. Ctrl-C stops it;
run again with the same --data-dir to resume.`,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Out = c.OutOrStdout()
			if o.FailureRate == 0 {
				o.FailureRate = -1 // none
			}
			ctx, cancel := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return cli.Profiled(cpuprofile, func() error { return Run(ctx, o) })
		}}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "HOST:PORT to listen on (port 0 picks a free one)")
	f.StringVar(&o.DataDir, "data-dir", "", "keep the demo's store here, and resume it when run again (default: a temporary directory, removed at the end)")
	f.IntVar(&o.GPUs, "gpus", 8192, "GPUs of the generated site (a multiple of 8; 196608 is a Colossus)")
	f.Float64Var(&o.Speed, "speed", 60, "seconds of the control plane's clock per real second (agents still report in real time)")
	f.Float64Var(&o.FailureRate, "failure-rate", 1, "failures as a multiple of Meta's Llama 3 rate (419 in 54 days on 16,384 H100s); 0: none")
	f.IntVar(&o.HeartbeatS, "heartbeat-s", 0, "seconds between agent heartbeats (default 10; 30 above 32,768 GPUs)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of arrivals and failures")
	f.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file until the demo stops")
	return cmd
}
