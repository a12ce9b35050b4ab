package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
)

var siteCols = []column{{"NAME", "name"}, {"ID", "id"}, {"REGION", "region"}, {"LEVELS", "levels"}, {"DOMAINS", "domains"}, {"NODES", "nodes"}, {"GPUS", "gpus"},
	{"SPARES", "spares"}, {"CORDONED", "cordoned"}, {"AVAILABLE", "by_lifecycle.available"}, {"HEALTH OK", "by_health.ok"}}

var nodeCols = []column{{"HOSTNAME", "hostname"}, {"ID", "id"}, {"SITE", "site"}, {"SKU", "sku"}, {"DOMAIN", "domain"},
	{"LIFECYCLE", "lifecycle"}, {"HEALTH", "health"}, {"CORDONED", "cordoned"}, {"SPARE", "spare"}}

var skuCols = []column{{"NAME", "name"}, {"GPU", "gpu_model"}, {"GPUS/NODE", "gpus_per_node"}, {"GPU MEM MIB", "gpu_memory_mib"},
	{"NODE MAX W", "node_max_power_w"}, {"PARTITIONS", "partitions"}, {"NVLINK NODES", "nvlink_domain_nodes"}, {"TURNAROUND S", "turnaround_s"}}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func fleetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "fleet", Short: "Site specs: generate and apply"}

	var o struct {
		gpus                           int
		sku, out, site, levels, fanout string
		spareLevel                     string
		spares                         int
	}
	gen := &cobra.Command{Use: "generate", Short: "Write a Colossus-shaped site spec", Args: cobra.NoArgs,
		Long: "Writes a site spec shaped like Colossus 1: 8 GPUs per node, 8 nodes per rack, scalable units (su) of 32 nodes, pods of 16 sus (4,096 GPUs), halls of 12 pods, with a power hierarchy (feed → hall → busway). --levels and --fanout override the shape: --fanout gives, per level, how many domains of the next level (or nodes, for the last) each holds.",
		RunE: func(c *cobra.Command, _ []string) error {
			sku, ok := fleet.CatalogSKU(o.sku)
			if !ok {
				return fmt.Errorf("--sku %q: unknown (known: h100-sxm5-80gb, h200-sxm-141gb, gb200-nvl72)", o.sku)
			}
			opts := fleet.ColossusOptions(sku, o.gpus)
			opts.Site = o.site
			if o.levels != "" {
				opts.Levels = strings.Split(o.levels, ",")
			}
			if o.fanout != "" {
				f, err := parseInts(o.fanout)
				if err != nil {
					return fmt.Errorf("--fanout: %w", err)
				}
				opts.Fanout = f
			}
			opts.SpareLevel, opts.Spares = o.spareLevel, o.spares
			w := g.stdout
			if o.out != "" && o.out != "-" {
				f, err := os.Create(o.out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			n, err := fleet.Generate(w, opts)
			if err != nil {
				return err
			}
			if o.out != "" && o.out != "-" {
				fmt.Fprintf(g.stderr, "wrote %s: site %s, %d nodes, %d GPUs (%s)\n", o.out, opts.Site, n, o.gpus, sku.Name)
			}
			return nil
		}}
	gen.Flags().IntVar(&o.gpus, "gpus", 196608, "total GPUs")
	gen.Flags().StringVar(&o.sku, "sku", "h100-sxm5-80gb", "SKU of every node")
	gen.Flags().StringVar(&o.out, "out", "", "file to write (default: standard output)")
	gen.Flags().StringVar(&o.site, "site", "colossus-1", "site name")
	gen.Flags().StringVar(&o.levels, "levels", "", "topology levels from the top, e.g. hall,pod,su,rack")
	gen.Flags().StringVar(&o.fanout, "fanout", "", "children per domain of each level, e.g. 12,16,4,8")
	gen.Flags().StringVar(&o.spareLevel, "spare-level", "su", "level whose domains each hold --spares spare nodes")
	gen.Flags().IntVar(&o.spares, "spares", 0, "spare nodes per domain of --spare-level")

	var file string
	apply := &cobra.Command{Use: "apply -f FILE", Short: "Apply a site spec to the server", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f FILE is required (- for standard input)")
			}
			var b []byte
			var err error
			if file == "-" {
				b, err = io.ReadAll(os.Stdin)
			} else {
				b, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "applying %s (%.1f MB)…\n", file, float64(len(b))/1e6)
			t0 := time.Now()
			var res fleet.ApplyResult
			if err := cl.Do(c.Context(), http.MethodPost, "/v1/fleet/apply", nil, b, &res); err != nil {
				return err
			}
			if g.output == "json" {
				printJSON(g.stdout, res)
				return nil
			}
			fmt.Fprintf(g.stdout, "site %s: %d added, %d changed, %d retired, %d unchanged (%d nodes, %d GPUs) in %s\n",
				res.Site, res.Added, res.Changed, res.Retired, res.Unchanged, res.Nodes, res.GPUs, time.Since(t0).Round(time.Millisecond))
			return nil
		}}
	apply.Flags().StringVarP(&file, "file", "f", "", "site spec (YAML or JSON)")
	cmd.AddCommand(gen, apply)
	return cmd
}

func siteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "site", Short: "Sites: data centers and their topology"}
	var lf listFlags
	list := &cobra.Command{Use: "list", Short: "List sites", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return g.list(c.Context(), "/v1/sites", nil, lf, siteCols) }}
	lf.add(list)
	show := &cobra.Command{Use: "show NAME|ID", Short: "Show a site", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodGet, "/v1/sites/"+url.PathEscape(args[0]), nil, siteCols)
		}}
	var dlf listFlags
	var level string
	domains := &cobra.Command{Use: "domains NAME|ID --level LEVEL", Short: "List a site's domains of one topology level with node counts", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.list(c.Context(), "/v1/sites/"+url.PathEscape(args[0])+"/domains", url.Values{"level": {level}}, dlf,
				[]column{{"PATH", "path"}, {"LEVEL", "level"}, {"NODES", "nodes"}, {"GPUS", "gpus"}, {"AVAILABLE", "available"}, {"SPARES", "spares"}})
		}}
	dlf.add(domains)
	domains.Flags().StringVar(&level, "level", "", "topology level, e.g. pod")
	cmd.AddCommand(list, show, domains, sitePowerCmd(g), siteShedCmd(g), siteFeedReadingsCmd(g))
	return cmd
}

func nodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Nodes: GPU servers"}
	var lf listFlags
	var f struct{ site, domain, sku, lifecycle, health, cordoned, spare string }
	list := &cobra.Command{Use: "list", Short: "List nodes", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := filters(map[string]string{"site": f.site, "domain": f.domain, "sku": f.sku, "lifecycle": f.lifecycle, "health": f.health, "cordoned": f.cordoned, "spare": f.spare})
			return g.list(c.Context(), "/v1/nodes", q, lf, nodeCols)
		}}
	lf.add(list)
	list.Flags().StringVar(&f.site, "site", "", "site name or id")
	list.Flags().StringVar(&f.domain, "domain", "", "topology path prefix, e.g. h1/p03")
	list.Flags().StringVar(&f.sku, "sku", "", "SKU name")
	list.Flags().StringVar(&f.lifecycle, "lifecycle", "", "provisioning, burn_in, available, maintenance, repair, sanitizing or retired")
	list.Flags().StringVar(&f.health, "health", "", "ok, degraded, unreachable or failed")
	list.Flags().StringVar(&f.cordoned, "cordoned", "", "true or false")
	list.Flags().StringVar(&f.spare, "spare", "", "true or false")

	show := &cobra.Command{Use: "show HOSTNAME|ID", Short: "Show a node; in a table, with its agent's last report (per-GPU telemetry, NICs, conditions) and its last hour, minute by minute", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			me, err := g.me(c.Context())
			if err != nil {
				return err
			}
			path := "/v1/nodes/" + url.PathEscape(args[0])
			if me.TenantID != "" {
				// A tenant sees its own node through its agent's last
				// report; the fleet's record of it is the operator's.
				if g.output != "table" {
					return g.one(c.Context(), http.MethodGet, path+"/agent", nil, agentCols)
				}
				return g.nodeTelemetry(c.Context(), args[0], me)
			}
			if g.output != "table" { // json and csv print the API's object alone
				return g.one(c.Context(), http.MethodGet, path, nil, append(nodeCols, column{"GPUS", "gpus"}))
			}
			if err := g.one(c.Context(), http.MethodGet, path, nil, nodeCols); err != nil {
				return err
			}
			return g.nodeTelemetry(c.Context(), args[0], me)
		}}
	cmd.AddCommand(list, show)
	for _, a := range []struct {
		action fleet.Action
		short  string
	}{
		{fleet.ActionCordon, "Stop placing new work on a node"},
		{fleet.ActionUncordon, "Let placement use a node again"},
		{fleet.ActionDrain, "Cordon a node and move it to maintenance once its work has ended"},
		{fleet.ActionMaintenance, "Move an idle node to maintenance"},
		{fleet.ActionAvailable, "Return a node to service"},
		{fleet.ActionRetire, "Retire a node for good"},
	} {
		cmd.AddCommand(&cobra.Command{Use: string(a.action) + " HOSTNAME|ID", Short: a.short, Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return g.one(c.Context(), http.MethodPost, "/v1/nodes/"+url.PathEscape(args[0])+"/"+string(a.action), nil, nodeCols)
			}})
	}
	var kind string
	var powerW int
	order := &cobra.Command{Use: "order HOSTNAME|ID", Short: "Order a node's agent: --kind drain|health_check|sanitize|power_cap|burn_in|reboot|gpu_reset [--power-w W]", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodPost, "/v1/nodes/"+url.PathEscape(args[0])+"/commands", map[string]any{"kind": kind, "power_w": powerW}, nodeCommandCols)
		}}
	order.Flags().StringVar(&kind, "kind", "", "drain, health_check, sanitize, power_cap, burn_in, reboot or gpu_reset")
	order.Flags().IntVar(&powerW, "power-w", 0, "for power_cap: watts per GPU")
	order.MarkFlagRequired("kind")
	cmd.AddCommand(order, &cobra.Command{Use: "commands HOSTNAME|ID", Short: "A node's commands and their outcomes", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.list(c.Context(), "/v1/nodes/"+url.PathEscape(args[0])+"/commands", nil, listFlags{limit: 1000}, nodeCommandCols)
		}})
	for _, bf := range []struct{ use, path, short string }{
		{"report", "report", "Report a node of one's own reservation as broken (--reason; an operator confirms it)"},
		{"reboot", "reboot", "Reboot a node of one's own reservation, through its agent"},
		{"gpu-reset", "gpu-reset", "Reset the GPUs of a node of one's own reservation, through its agent"},
		{"replace", "replace", "Have a node of one's own reservation replaced (within the contract's monthly allowance)"},
	} {
		var reason string
		c := &cobra.Command{Use: bf.use + " HOSTNAME|ID", Short: bf.short, Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return g.one(c.Context(), http.MethodPost, "/v1/nodes/"+url.PathEscape(args[0])+"/"+bf.path, map[string]any{"reason": reason}, breakFixCols)
			}}
		c.Flags().StringVar(&reason, "reason", "", "what is wrong")
		cmd.AddCommand(c)
	}
	var force bool
	repairDone := &cobra.Command{Use: "repair-done HOSTNAME|ID", Short: "A repaired node goes to burn-in, sanitizing, then service (--force for a quarantined one)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodPost, "/v1/nodes/"+url.PathEscape(args[0])+"/repair-done", map[string]any{"force": force}, ticketCols)
		}}
	repairDone.Flags().BoolVar(&force, "force", false, "let a quarantined node back")
	fail := g.reasonCmd("fail HOSTNAME|ID --reason TEXT", "Fail a node found broken (say, in a silent domain the breaker holds): its work is replaced and its repair opened",
		"why (required): the ticket and the tenants' events carry it", func(ref string) string { return "/v1/nodes/" + url.PathEscape(ref) + "/fail" }, ticketCols)
	cmd.AddCommand(repairDone, fail, &cobra.Command{Use: "sanitize-records HOSTNAME|ID", Short: "A node's sanitize records: steps and result, before each new tenant", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.list(c.Context(), "/v1/nodes/"+url.PathEscape(args[0])+"/sanitize-records", nil, listFlags{limit: 1000},
				[]column{{"ID", "id"}, {"RESULT", "result"}, {"TICKET", "ticket_id"}, {"STARTED", "started_at"}, {"FINISHED", "finished_at"}, {"STEPS", "steps"}})
		}})
	var power string
	bmc := &cobra.Command{Use: "bmc HOSTNAME|ID [--set on|off|unreachable]", Short: "What a node's (simulated) out-of-band controller reports; --set changes it", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := "/v1/nodes/" + url.PathEscape(args[0]) + "/bmc"
			if power == "" {
				return g.one(c.Context(), http.MethodGet, path, nil, []column{{"POWER", "power"}})
			}
			if power == "unreachable" {
				power = ""
			}
			return g.one(c.Context(), http.MethodPut, path, map[string]any{"power": power}, []column{{"POWER", "power"}})
		}}
	bmc.Flags().StringVar(&power, "set", "", "on, off or unreachable (simulated controllers only)")
	cmd.AddCommand(bmc)
	var fromSeq, toSeq int64
	samples := &cobra.Command{Use: "samples HOSTNAME|ID --to-seq N", Short: "A node's per-report samples: energy counter sum (J) and power (W), by sequence number", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			q := url.Values{"from_seq": {fmt.Sprint(fromSeq)}, "to_seq": {fmt.Sprint(toSeq)}}
			return g.list(c.Context(), "/v1/nodes/"+url.PathEscape(args[0])+"/samples", q, listFlags{limit: 100_000},
				[]column{{"SEQ", "seq"}, {"AT", "at"}, {"ENERGY J", "energy_j"}, {"POWER W", "power_w"}})
		}}
	samples.Flags().Int64Var(&fromSeq, "from-seq", 1, "first sequence number")
	samples.Flags().Int64Var(&toSeq, "to-seq", 0, "last sequence number (inclusive)")
	samples.MarkFlagRequired("to-seq")
	cmd.AddCommand(samples)
	cmd.AddCommand(joinTokenCmd(g), &cobra.Command{Use: "rekey HOSTNAME|ID", Short: "Revoke a node's agent credential so that its agent may join again", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodPost, "/v1/nodes/"+url.PathEscape(args[0])+"/rekey", nil, nodeCols)
		}}, &cobra.Command{Use: "agent HOSTNAME|ID", Short: "A node's last agent report: health, action and conditions", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodGet, "/v1/nodes/"+url.PathEscape(args[0])+"/agent", nil, agentCols)
		}})
	return cmd
}

// agentCols are the columns of a node's last agent report.
var agentCols = []column{{"NODE", "node_id"}, {"SEQ", "seq"}, {"SEEN", "seen_at"}, {"HEALTH", "health"}, {"ACTION", "action"}, {"CONDITIONS", "conditions"}}

// nodeTelemetry prints a node's last agent report and, to an operator, its
// last hour.
func (g *globals) nodeTelemetry(ctx context.Context, ref string, me me) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	var st struct {
		Seq        int64     `json:"seq"`
		SeenAt     time.Time `json:"seen_at"`
		Health     string    `json:"health"`
		Action     string    `json:"action"`
		Conditions []struct {
			Reason string `json:"reason"`
			Action string `json:"action"`
		} `json:"conditions"`
		Found     []json.RawMessage `json:"gpus_found"`
		Heartbeat struct {
			AgentVersion  string            `json:"agent_version"`
			DriverVersion string            `json:"driver_version"`
			UptimeS       int64             `json:"uptime_s"`
			GPUs          []json.RawMessage `json:"gpus"`
			NICs          []json.RawMessage `json:"nics"`
			Checks        []json.RawMessage `json:"checks"`
		} `json:"heartbeat"`
	}
	path := "/v1/nodes/" + url.PathEscape(ref)
	// The node's GPUs: as its agent found them when it joined (a repair
	// ticket names them by UUID), else as the fleet lists them.
	inventory := func(gpus []json.RawMessage) error {
		if len(gpus) == 0 {
			return nil
		}
		fmt.Fprintln(g.stdout)
		return printItems(g.stdout, "table", gpus, false, []column{{"GPU", "index"}, {"MODEL", "model"}, {"MEMORY MIB", "memory_mib"}, {"UUID", "uuid"}})
	}
	// To a tenant, a node without reports answers 404 as one not its own
	// does: the API's answer says which.
	if err := c.Do(ctx, http.MethodGet, path+"/agent", nil, nil, &st); neocloud.ErrorKind(err) == neocloud.KindNotFound && me.TenantID == "" {
		var n struct {
			GPUs []json.RawMessage `json:"gpus"`
		}
		if err := c.Do(ctx, http.MethodGet, path, nil, nil, &n); err != nil {
			return err
		}
		if err := inventory(n.GPUs); err != nil {
			return err
		}
		fmt.Fprintln(g.stdout, "\nno agent has reported for this node")
		return nil
	} else if err != nil {
		return err
	}
	if err := inventory(st.Found); err != nil {
		return err
	}
	hb := st.Heartbeat
	now := me.Now.UTC() // the control plane's (a demo's runs ahead of this machine's)
	driver := ""
	if hb.DriverVersion != "" {
		driver = ", driver " + hb.DriverVersion
	}
	fmt.Fprintf(g.stdout, "\nAGENT  report %d at %s (%s ago), health %s, action %q, agent %s%s, up %s\n", st.Seq, st.SeenAt.Format(time.RFC3339),
		now.Sub(st.SeenAt).Truncate(time.Second), st.Health, st.Action, hb.AgentVersion, driver, time.Duration(hb.UptimeS)*time.Second)
	for _, cd := range st.Conditions {
		fmt.Fprintf(g.stdout, "  condition: %s (%s)\n", cd.Reason, cd.Action)
	}
	fmt.Fprintln(g.stdout)
	if err := printItems(g.stdout, "table", hb.GPUs, false, []column{{"GPU", "index"}, {"POWER W", "power_w"}, {"ENERGY J", "energy_j"}, {"TEMP C", "temp_c"}, {"UTIL %", "util_pct"},
		{"MEM MIB", "mem_used_mib"}, {"ECC CORR", "ecc_corrected"}, {"ECC UNCORR", "ecc_uncorrected"}, {"REMAP PENDING", "row_remap_pending"}, {"THROTTLE", "throttle"}, {"LOST", "lost"}}); err != nil {
		return err
	}
	if len(hb.NICs) > 0 {
		fmt.Fprintln(g.stdout)
		if err := printItems(g.stdout, "table", hb.NICs, false, []column{{"NIC", "name"}, {"UP", "up"}, {"ERRORS", "errors"}}); err != nil {
			return err
		}
	}
	if len(hb.Checks) > 0 {
		fmt.Fprintln(g.stdout)
		if err := printItems(g.stdout, "table", hb.Checks, false, []column{{"CHECK", "name"}, {"OK", "ok"}, {"MESSAGE", "message"}}); err != nil {
			return err
		}
	}
	if me.TenantID != "" {
		return nil // the minutes are the operator's
	}
	var ms struct{ Items []json.RawMessage }
	q := url.Values{"from": {now.Add(-time.Hour).Format(time.RFC3339)}, "to": {now.Add(time.Minute).Format(time.RFC3339)}}
	if err := c.Do(ctx, http.MethodGet, path+"/minutes", q, nil, &ms); err != nil {
		return err
	}
	if len(ms.Items) == 1 {
		fmt.Fprintln(g.stdout, "\nLAST HOUR (1 minute with reports)")
	} else {
		fmt.Fprintf(g.stdout, "\nLAST HOUR (%d minutes with reports)\n", len(ms.Items))
	}
	return printItems(g.stdout, "table", ms.Items, false, []column{{"MINUTE", "minute"}, {"REPORTS", "samples"}, {"POWER AVG W", "power_avg_w"}, {"POWER MAX W", "power_max_w"},
		{"TEMP MAX C", "temp_max_c"}, {"ENERGY FIRST J", "energy_first_j"}, {"ENERGY LAST J", "energy_last_j"}})
}

var breakFixCols = []column{{"ID", "id"}, {"NODE", "hostname"}, {"KIND", "kind"}, {"STATE", "state"}, {"RESERVATION", "reservation_id"}, {"REASON", "reason"}, {"COMMAND", "command_id"}, {"CREATED", "created_at"}, {"CONFIRMED", "confirmed_at"}, {"RESOLUTION", "resolution"}}

func breakFixCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "break-fix", Short: "Tenants' requests on their nodes: reports awaiting an operator, reboots, GPU resets, replacements"}
	var f struct{ state, kind, node, reservation string }
	var lf listFlags
	list := &cobra.Command{Use: "list", Short: "Break-fix requests, oldest first (--state open: the reports awaiting an operator); a tenant sees its own", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"state": f.state, "kind": f.kind, "node": f.node, "reservation": f.reservation} {
				if v != "" {
					q.Set(k, v)
				}
			}
			return g.list(c.Context(), "/v1/break-fix", q, lf, breakFixCols)
		}}
	list.Flags().StringVar(&f.state, "state", "", "open, confirmed, declined or done")
	list.Flags().StringVar(&f.kind, "kind", "", "report, reboot, gpu_reset or replace")
	list.Flags().StringVar(&f.node, "node", "", "one node's (hostname or id)")
	list.Flags().StringVar(&f.reservation, "reservation", "", "one reservation's")
	lf.add(list)
	decline := g.reasonCmd("decline ID --reason TEXT", "Decline a tenant's report: no fault found, the node stays in the work, no downtime counts (the tenant is told why)",
		"why no fault is behind the report", func(id string) string { return "/v1/break-fix/" + url.PathEscape(id) + "/decline" }, breakFixCols)
	cmd.AddCommand(list, decline, &cobra.Command{Use: "show ID", Short: "Show a break-fix request", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodGet, "/v1/break-fix/"+url.PathEscape(args[0]), nil, breakFixCols)
		}}, &cobra.Command{Use: "confirm ID", Short: "Confirm a tenant's report: the node is failed, its work replaced, its repair opened; downtime counts from the report", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodPost, "/v1/break-fix/"+url.PathEscape(args[0])+"/confirm", nil, breakFixCols)
		}})
	return cmd
}

var ticketCols = []column{{"ID", "id"}, {"NODE", "hostname"}, {"SERIAL", "serial"}, {"WHERE", "domain"}, {"STATE", "state"}, {"QUARANTINED", "quarantined"}, {"OPENED", "opened_at"}, {"REASONS", "reasons"}, {"MESSAGE", "message"}}

// reasonCmd is a command that posts its one argument's --reason to the
// path made from that argument and prints the answer.
func (g *globals) reasonCmd(use, short, reasonDoc string, path func(arg string) string, cols []column) *cobra.Command {
	var reason string
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodPost, path(args[0]), map[string]any{"reason": reason}, cols)
		}}
	cmd.Flags().StringVar(&reason, "reason", "", reasonDoc)
	return cmd
}

func repairCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "repair", Short: "Repair tickets: failed nodes on their way back to service"}
	var node string
	var all bool
	list := &cobra.Command{Use: "list", Short: "Repair tickets, newest first (open ones unless --all)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := url.Values{}
			if node != "" {
				q.Set("node", node)
			}
			if all {
				q.Set("all", "true")
			}
			return g.list(c.Context(), "/v1/repairs", q, listFlags{limit: 1000, all: true}, ticketCols) // every page
		}}
	list.Flags().StringVar(&node, "node", "", "one node's (hostname or id)")
	list.Flags().BoolVar(&all, "all", false, "closed tickets too")
	cmd.AddCommand(list)
	return cmd
}

// replicaCols are the columns of the control plane's server processes.
var replicaCols = []column{{"ID", "id"}, {"HOST", "host"}, {"ADDR", "addr"}, {"PID", "pid"}, {"VERSION", "version"}, {"STATE", "state"}, {"LEADS", "leads"},
	{"STARTED", "started_at"}, {"SEEN", "seen_at"}, {"THIS", "this"}}

func replicaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "replica", Short: "The control plane's server processes on its database"}
	cmd.AddCommand(&cobra.Command{Use: "list", Short: "Replicas, the latest started first: up, silent or stopped, and the work each leads (lifecycle: steps reservations; liveness: judges nodes)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/replicas", nil, listFlags{limit: 1000}, replicaCols)
		}})
	return cmd
}

func healthCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "health", Short: "Fleet health: incidents and nodes that are not ok"}
	var all bool
	list := &cobra.Command{Use: "list", Short: "Open incidents (domains gone silent), every node that is degraded, unreachable or failed, with its reasons, tenants' reports awaiting an operator, and the control plane's replicas", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := url.Values{}
			if all {
				q.Set("all", "true")
			}
			fmt.Fprintln(g.stdout, "INCIDENTS")
			if err := g.list(c.Context(), "/v1/health/incidents", q, listFlags{limit: 1000},
				[]column{{"ID", "id"}, {"KIND", "kind"}, {"LEVEL", "level"}, {"DOMAIN", "domain"}, {"SILENT", "silent"}, {"NODES", "nodes"}, {"OPENED", "opened_at"}, {"CLOSED", "closed_at"}, {"MESSAGE", "message"}}); err != nil {
				return err
			}
			cols := []column{{"HOSTNAME", "hostname"}, {"HEALTH", "health"}, {"LIFECYCLE", "lifecycle"}, {"DOMAIN", "domain"}, {"REASONS", "health_reasons"}}
			for _, h := range []string{"failed", "unreachable", "degraded"} {
				fmt.Fprintln(g.stdout, "\nNODES "+strings.ToUpper(h))
				if err := g.list(c.Context(), "/v1/nodes", url.Values{"health": {h}}, listFlags{limit: 1000, all: true}, cols); err != nil {
					return err
				}
			}
			fmt.Fprintln(g.stdout, "\nTENANTS' REPORTS AWAITING AN OPERATOR (break-fix confirm|decline ID)")
			if err := g.list(c.Context(), "/v1/break-fix", url.Values{"state": {"open"}}, listFlags{limit: 1000, all: true},
				[]column{{"ID", "id"}, {"NODE", "hostname"}, {"TENANT", "tenant_id"}, {"RESERVATION", "reservation_id"}, {"REASON", "reason"}, {"CREATED", "created_at"}}); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, "\nREPLICAS (the control plane's servers)")
			return g.list(c.Context(), "/v1/replicas", nil, listFlags{limit: 1000}, replicaCols)
		}}
	list.Flags().BoolVar(&all, "all", false, "closed incidents too")
	cmd.AddCommand(list)
	return cmd
}

var nodeCommandCols = []column{{"ID", "id"}, {"KIND", "kind"}, {"GENERATION", "generation"}, {"POWER W", "power_w"}, {"STATE", "state"}, {"MESSAGE", "message"}, {"CREATED", "created_at"}, {"DONE", "done_at"}}

var joinTokenCols = []column{{"ID", "id"}, {"SITE", "site_id"}, {"USES", "uses"}, {"MAX USES", "max_uses"}, {"EXPIRES", "expires_at"}, {"HINT", "hint"}}

func joinTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "join-token", Short: "Site join tokens for node agents"}
	var site, ttl string
	var uses int64
	create := &cobra.Command{Use: "create", Short: "Create a join token and print its secret once", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			d, err := ParseDuration(ttl)
			if err != nil {
				return neocloud.Invalid("--ttl", "%v", err)
			}
			return g.one(c.Context(), http.MethodPost, "/v1/sites/"+url.PathEscape(site)+"/join-tokens", map[string]any{"max_uses": uses, "ttl_s": int64(d / time.Second)},
				append(append([]column{}, joinTokenCols...), column{"SECRET (shown once)", "secret"}))
		}}
	create.Flags().StringVar(&site, "site", "", "site name or id")
	create.Flags().Int64Var(&uses, "uses", 1, "how many agents may join with it")
	create.Flags().StringVar(&ttl, "ttl", "24h", "how long it stays valid")
	create.MarkFlagRequired("site")
	var lsite string
	list := &cobra.Command{Use: "list", Short: "List a site's join tokens", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/sites/"+url.PathEscape(lsite)+"/join-tokens", nil, listFlags{limit: 1000}, joinTokenCols)
		}}
	list.Flags().StringVar(&lsite, "site", "", "site name or id")
	list.MarkFlagRequired("site")
	cmd.AddCommand(create, list)
	return cmd
}

func skuCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "sku", Short: "SKUs: sellable node shapes"}
	cmd.AddCommand(&cobra.Command{Use: "list", Short: "List SKUs", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/skus", nil, listFlags{limit: 1000}, skuCols)
		}})
	return cmd
}
