package cli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func emissionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "emissions", Short: "Energy, water and emissions (Scope 1 and 2) by tenant and site, and the air permit"}
	var site, tenant, period, format, out string
	report := &cobra.Command{Use: "report", Short: "A tenant's (or a whole site's) energy, water and emissions for a period", Args: cobra.NoArgs,
		Long: "With --tenant (a tenant token: its own), that tenant's share of the site; an operator without it gets the site's report by party " +
			"(tenants, operator, unallocated), the generation units and the air permit's year to date. --period 2027-H1 is the semiannual permit report. " +
			"--format json|csv|pdf writes the export (to --out); without it a table.",
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := filters(map[string]string{"site": site, "tenant": tenant, "period": period})
			if format != "" {
				q.Set("format", format)
				b, err := cl.Raw(c.Context(), http.MethodGet, "/v1/emissions/export", q, nil, "")
				if err != nil {
					return err
				}
				return g.writeOut(out, b)
			}
			raw, err := cl.Raw(c.Context(), http.MethodGet, "/v1/emissions", q, nil, "")
			if err != nil {
				return err
			}
			if g.output == "json" {
				_, err := g.stdout.Write(append(raw, '\n'))
				return err
			}
			var r struct {
				SiteName     string            `json:"site_name"`
				TenantName   string            `json:"tenant_name"`
				Period       string            `json:"period"`
				Totals       json.RawMessage   `json:"totals"`
				Parties      []json.RawMessage `json:"parties"`
				Reservations []json.RawMessage `json:"reservations"`
				HoursMetered int               `json:"hours_metered"`
				Estimated    bool              `json:"estimated"`
				GridWh       int64             `json:"grid_wh"`
				GenerationWh int64             `json:"generation_wh"`
				UnservedWh   int64             `json:"unserved_wh"`
				Reconcile    *struct {
					Hours       int   `json:"hours"`
					MeteredWh   int64 `json:"metered_wh"`
					AccountedWh int64 `json:"accounted_wh"`
					Unallocated int64 `json:"unallocated_wh"`
				} `json:"reconciliation"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			cols := []column{{"PARTY", "party"}, {"IT WH", "it_wh"}, {"FACILITY WH", "facility_wh"}, {"WATER L", "water_l"},
				{"SCOPE 2 G CO2E", "scope2_g_co2e"}, {"SCOPE 1 G CO2", "scope1_g.co2"}, {"SCOPE 1 G NOX", "scope1_g.nox"}}
			items := append([]json.RawMessage{r.Totals}, r.Parties...)
			if err := printItems(g.stdout, g.output, items, false, cols); err != nil || g.output != "table" {
				return err
			}
			if len(r.Reservations) > 0 {
				fmt.Fprintln(g.stdout)
				if err := printItems(g.stdout, g.output, r.Reservations, false, []column{{"RESERVATION", "reservation_id"}, {"IT WH", "it_wh"},
					{"FACILITY WH", "facility_wh"}, {"WATER L", "water_l"}, {"SCOPE 2 G CO2E", "scope2_g_co2e"}, {"SCOPE 1 G CO2", "scope1_g_co2"}}); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "\n%s %s: %d hours metered", r.SiteName, r.Period, r.HoursMetered)
			if r.TenantName == "" {
				fmt.Fprintf(g.stdout, "; grid %d Wh, generation %d Wh, unserved %d Wh", r.GridWh, r.GenerationWh, r.UnservedWh)
			}
			if r.Estimated {
				fmt.Fprint(g.stdout, " (estimated: dispatch model)")
			}
			fmt.Fprintln(g.stdout)
			if rc := r.Reconcile; rc != nil {
				fmt.Fprintf(g.stdout, "supply meters, %d hours: metered %d Wh, accounted %d Wh, unallocated %d Wh\n", rc.Hours, rc.MeteredWh, rc.AccountedWh, rc.Unallocated)
			}
			return nil
		}}
	report.Flags().StringVar(&site, "site", "", "site name or id (default: the only site)")
	report.Flags().StringVar(&tenant, "tenant", "", "tenant name or id")
	report.Flags().StringVar(&period, "period", "", "2027-01, 2027-Q1, 2027-H1 or 2027")
	report.Flags().StringVar(&format, "format", "", "json, csv or pdf: the export")
	report.Flags().StringVar(&out, "out", "", "file to write the export to (default: standard output)")
	report.MarkFlagRequired("period")
	cmd.AddCommand(report)
	return cmd
}

func sitePowerCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "power NAME|ID", Short: "A site's firm capacity, committed and measured load and headroom, per power domain", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			raw, err := cl.Raw(c.Context(), http.MethodGet, "/v1/sites/"+url.PathEscape(args[0])+"/power", nil, nil, "")
			if err != nil {
				return err
			}
			cols := []column{{"SITE", "site_name"}, {"FIRM W", "firm_w"}, {"GRID W", "grid_w"}, {"GENERATION W", "generation_w"}, {"PUE", "pue"},
				{"COMMITTED W", "committed_w"}, {"ALLOCATED W", "allocated_w"}, {"MEASURED W", "measured_w"}, {"HEADROOM W", "headroom_w"}}
			if err := printItems(g.stdout, g.output, []json.RawMessage{raw}, true, cols); err != nil || g.output == "json" {
				return err
			}
			var sp struct {
				Domains []json.RawMessage `json:"domains"`
			}
			json.Unmarshal(raw, &sp)
			fmt.Fprintln(g.stdout)
			return printItems(g.stdout, g.output, sp.Domains, false, []column{{"DOMAIN", "path"}, {"LEVEL", "level"}, {"NODES", "nodes"}, {"CAPACITY W", "capacity_w"},
				{"PLANNING W", "planning_w"}, {"COMMITTED W", "committed_w"}, {"MEASURED W", "measured_w"}, {"HEADROOM W", "headroom_w"}})
		}}
}

func siteShedCmd(g *globals) *cobra.Command {
	var event, name string
	var capMW float64
	cmd := &cobra.Command{Use: "shed NAME|ID --event turbine_trip|feed_drop|cap", Short: "Report a power event (a turbine trip, a feed dropped, an emergency cap) and shed load", Args: cobra.ExactArgs(1),
		Long: "Load beyond the firm capacity left is shed in class order (internal, spot, on-demand, then committed work only down to its contract's floor) " +
			"first by per-GPU power caps through the nodes' agents, then by preempting internal, then spot, reservations.",
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			body := map[string]any{"event": event, "name": name}
			if capMW > 0 {
				body["cap_mw"] = capMW
			}
			raw, err := cl.Raw(c.Context(), http.MethodPost, "/v1/sites/"+url.PathEscape(args[0])+"/power/events", nil, body, "")
			if err != nil {
				return err
			}
			if err := printItems(g.stdout, g.output, []json.RawMessage{raw}, true, []column{{"EVENT", "event"}, {"NAME", "name"}, {"FIRM W", "firm_w"},
				{"LOAD W", "load_w"}, {"NEED W", "need_w"}, {"SAVED W", "saved_w"}, {"SHORT W", "short_w"}}); err != nil || g.output == "json" {
				return err
			}
			var p struct {
				Actions []json.RawMessage `json:"actions"`
			}
			json.Unmarshal(raw, &p)
			if len(p.Actions) == 0 {
				return nil
			}
			fmt.Fprintln(g.stdout)
			return printItems(g.stdout, g.output, p.Actions, false, []column{{"ACTION", "kind"}, {"CLASS", "class"}, {"NODE", "node_id"},
				{"RESERVATION", "reservation_id"}, {"CAP W/GPU", "cap_w"}, {"SAVED W", "saved_w"}, {"APPLIED", "applied"}, {"ERROR", "error"}})
		}}
	cmd.Flags().StringVar(&event, "event", "", "turbine_trip, feed_drop or cap")
	cmd.Flags().StringVar(&name, "name", "", "the unit (turbine_trip) or feed (feed_drop)")
	cmd.Flags().Float64Var(&capMW, "cap-mw", 0, "for cap: the site's limit in MW")
	cmd.MarkFlagRequired("event")
	return cmd
}

func siteFeedReadingsCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{Use: "feed-readings NAME|ID --file readings.csv", Short: "Report supply-meter readings (feed,hour,wh CSV; - for stdin)", Args: cobra.ExactArgs(1),
		Long: "Hours of energy through the site's supply meters, one per line: the feed or generation unit, the hour's start (RFC 3339) and its watt-hours. " +
			"A header line feed,hour,wh is allowed. Site emissions reports reconcile them against the facility energy accounted for those hours.",
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var r io.Reader = os.Stdin
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			rows, err := csv.NewReader(r).ReadAll()
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			var readings []map[string]any
			for i, row := range rows {
				if i == 0 && len(row) > 0 && row[0] == "feed" {
					continue
				}
				if len(row) != 3 {
					return fmt.Errorf("%s:%d: want feed,hour,wh; got %d fields", file, i+1, len(row))
				}
				wh, err := strconv.ParseInt(strings.TrimSpace(row[2]), 10, 64)
				if err != nil {
					return fmt.Errorf("%s:%d: wh %q is not a whole number of watt-hours", file, i+1, row[2])
				}
				readings = append(readings, map[string]any{"feed": strings.TrimSpace(row[0]), "hour": strings.TrimSpace(row[1]), "wh": wh})
			}
			raw, err := cl.Raw(c.Context(), http.MethodPost, "/v1/sites/"+url.PathEscape(args[0])+"/power/feed-readings", nil, map[string]any{"readings": readings}, "")
			if err != nil {
				return err
			}
			return printItems(g.stdout, g.output, []json.RawMessage{raw}, true, []column{{"STORED", "stored"}})
		}}
	cmd.Flags().StringVar(&file, "file", "", "CSV of feed,hour,wh (- for stdin)")
	cmd.MarkFlagRequired("file")
	return cmd
}
