package cli

import (
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud/placement/placementbench"
)

func benchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Benchmarks (they start what they need themselves)"}
	var o placementbench.Options
	var cpuprofile string
	p := &cobra.Command{Use: "placement", Short: "Measure the placer on a 196,608-GPU fleet filled to 70% (speed and quality)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o.Progress = g.stderr
			return profiled(cpuprofile, func() error { return placementbench.Run(g.stdout, o) })
		}}
	p.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	p.Flags().Uint64Var(&o.Seed, "seed", 1, "seed of the request streams")
	p.Flags().IntVar(&o.GPUs, "gpus", 196608, "fleet size in GPUs (8 per node)")
	p.Flags().Float64Var(&o.Fill, "fill", 0.70, "occupancy to reach before measuring")
	p.Flags().IntVar(&o.Samples, "samples", 20000, "samples per latency case")
	p.Flags().DurationVar(&o.StreamFor, "stream", 5*time.Second, "length of the sustained stream")
	p.Flags().IntVar(&o.Calendar, "calendar", 10000, "reservations on the calendar (cases 7, 8, 10)")
	p.Flags().IntVar(&o.Running, "running", 5000, "spot and internal reservations running (case 9)")
	var rb ReservationBench
	rsv := &cobra.Command{Use: "reservations", Short: "Measure reservations over HTTP: per second, create and create → ready latencies (SQLite, or PostgreSQL with --database-url)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			rb.Progress = g.stderr
			return profiled(cpuprofile, func() error { return RunReservationBench(c.Context(), g.stdout, rb) })
		}}
	rsv.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	rsv.Flags().StringVar(&rb.DatabaseURL, "database-url", "", "postgres://… to measure PostgreSQL (default: SQLite in a temporary directory)")
	rsv.Flags().IntVar(&rb.GPUs, "gpus", 196608, "site size in GPUs")
	rsv.Flags().IntVar(&rb.N, "n", 2000, "reservations to make")
	rsv.Flags().IntVar(&rb.Clients, "clients", 16, "concurrent HTTP clients")
	rsv.Flags().IntVar(&rb.GPUsEach, "gpus-each", 8, "GPUs per reservation")
	rsv.Flags().DurationVar(&rb.Provision, "provision", 0, "simulated provisioning time per node")
	rsv.Flags().BoolVar(&rb.OverSpot, "over-spot", false, "fill the site with spot work first, so that every reservation reclaims its nodes (wall-clock reclaim)")
	var hb HeartbeatBench
	hbs := &cobra.Command{Use: "heartbeats", Short: "Measure agent heartbeats over HTTP against a server process on SQLite: per second, latency, server CPU per heartbeat, memory", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			hb.Progress = g.stderr
			return RunHeartbeatBench(c.Context(), g.stdout, hb)
		}}
	hbs.Flags().IntVar(&hb.Agents, "agents", 25000, "simulated agents, one node each")
	hbs.Flags().DurationVar(&hb.For, "for", 30*time.Second, "how long to send heartbeats")
	hbs.Flags().IntVar(&hb.Clients, "clients", 64, "connections, shared by the agents in turn")
	hbs.Flags().IntVar(&hb.Pipeline, "pipeline", 1, "agents' requests each connection carries at once, pipelined (HTTP/1.1)")
	hbs.Flags().IntVar(&hb.Relays, "relays", 0, "run this many relays (neocloud relay) between the connections and the server")
	hbs.Flags().IntVar(&hb.RelayConns, "relay-conns", 4, "with --relays: each relay's connections to the server")
	hbs.Flags().DurationVar(&hb.Outage, "outage", 0, "then stop the server this long, start it again, and count the nodes it fails (e.g. 10m)")
	hbs.Flags().DurationVar(&hb.After, "after", 3*time.Minute, "with --outage: how long agents report at the real cadence after the restart")
	hbs.Flags().BoolVar(&hb.Streams, "streams", false, "open every agent's push stream first (a connection each) and report the server's memory for them")
	hbs.Flags().StringVar(&hb.DatabaseURL, "database-url", "", "postgres://… to run the server on PostgreSQL (an empty database)")
	hbs.Flags().StringVar(&hb.Profile, "server-cpuprofile", "", "write the server's CPU profile to this file (with --outage, the restarted server's to FILE.after)")
	hbs.Flags().StringVar(&hb.Binary, "binary", "", "neocloud binary to run the server from (default: this one)")
	var bb BillingBench
	bill := &cobra.Command{Use: "billing", Short: "Measure a month's close: a site's month of allocations, usage records and failures, then metering the last hour, SLA credits, rating and invoicing (SQLite, or PostgreSQL with --database-url)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			bb.Progress = g.stderr
			return profiled(cpuprofile, func() error { return RunBillingBench(c.Context(), g.stdout, bb) })
		}}
	bill.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	bill.Flags().StringVar(&bb.CloseProfile, "close-cpuprofile", "", "write a CPU profile of the close alone to this file")
	bill.Flags().StringVar(&bb.Save, "save", "", "keep a copy of the built month (SQLite) in this file, to close again with --from")
	bill.Flags().StringVar(&bb.From, "from", "", "close a copy of a month saved with --save instead of building one")
	bill.Flags().StringVar(&bb.DatabaseURL, "database-url", "", "postgres://… (an empty database) to measure PostgreSQL (default: SQLite in a temporary directory)")
	bill.Flags().IntVar(&bb.GPUs, "gpus", 196608, "site size in GPUs")
	bill.Flags().IntVar(&bb.Allocations, "allocations", 1000000, "allocations in the month")
	bill.Flags().IntVar(&bb.Failures, "failures", 3000, "committed nodes that fail and are replaced during the month")
	bill.Flags().IntVar(&bb.Tenants, "tenants", 100, "tenants (one leases a quarter of the site, 20 reserve clusters, the rest run on-demand and spot)")
	bill.Flags().Uint64Var(&bb.Seed, "seed", 1, "seed")
	cmd.AddCommand(p, rsv, hbs, bill)
	return cmd
}

// Profiled runs fn, writing a CPU profile to path (none when path is
// empty).
func Profiled(path string, fn func() error) error { return profiled(path, fn) }

func profiled(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	return fn()
}
