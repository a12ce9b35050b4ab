package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/httpapi"
	"github.com/neocloud/neocloud/relay"
)

func relayCmd(g *globals) *cobra.Command {
	var listen string
	o := relay.Options{}
	cmd := &cobra.Command{Use: "relay", Short: "Relay a rack's agents to the server, their heartbeats pipelined on a few connections", Args: cobra.NoArgs,
		Long: `Agents given the relay's URL as their server report through it: their
heartbeats go to the server (--server) on --conns connections, many at once,
and everything else passes through. A relay keeps nothing: each heartbeat is
answered with the server's answer, or 502 when there is none, and the agent
sends it again. The relay's own metrics (Prometheus) are at /relay/metrics.`,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.Conns < 1 {
				return neocloud.Invalid("--conns", "must be at least 1")
			}
			if o.Timeout <= 0 {
				return neocloud.Invalid("--timeout", "must be positive")
			}
			o.Server = g.server
			o.Log = slog.New(slog.NewTextHandler(g.stderr, nil))
			r, err := relay.New(o)
			if err != nil {
				return neocloud.Invalid("--server", "%v", err)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				r.Close()
				return err
			}
			ctx, cancel := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			fmt.Fprintf(g.stdout, "neocloud relay listening on http://%s for %s (%d connections); its metrics at http://%[1]s%[4]s\n", ln.Addr(), g.server, o.Conns, relay.MetricsPath)
			err = ServeRelay(ctx, ln, r)
			st := r.Stats()
			fmt.Fprintf(g.stdout, "relayed %d heartbeats in %d batches (largest %d) on %d connections opened; %d unanswered\n", st.Heartbeats, st.Batches, st.Largest, st.Dials, st.Unanswered)
			return err
		}}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8780", "address the agents reach the relay at")
	cmd.Flags().IntVar(&o.Conns, "conns", 4, "connections to the server that carry heartbeats")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 30*time.Second, "how long a batch of heartbeats may wait for the server's answers")
	return cmd
}

// ServeRelay serves r on ln until ctx ends, then shuts down: the agents'
// connections close once their heartbeats under way are answered. Its
// heartbeats are served by the server's own front (httpapi.Front), the
// rest by net/http.
func ServeRelay(ctx context.Context, ln net.Listener, r *relay.Relay) error {
	front := &httpapi.Front{Server: &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}, Fast: relay.Fast}
	errc := make(chan error, 1)
	go func() { errc <- front.Serve(ln) }()
	select {
	case err := <-errc:
		r.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := front.Shutdown(sctx)
	<-errc
	r.Close()
	return err
}
