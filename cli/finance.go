package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"
)

func financeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "finance", Short: "Utilization, revenue, backlog, unit economics and the whole-site lease what-if (operators)"}
	var site, period, currency string
	get := func(c *cobra.Command, path string, withCurrency bool) (json.RawMessage, error) {
		cl, err := g.client()
		if err != nil {
			return nil, err
		}
		q := filters(map[string]string{"site": site, "period": period})
		if withCurrency && currency != "" {
			q.Set("currency", currency)
		}
		return cl.Raw(c.Context(), http.MethodGet, path, q, nil, "")
	}
	// show prints the whole object as JSON, or rows of one of its lists
	// as a table or CSV, with a headline.
	show := func(raw json.RawMessage, list string, cols []column, headline func(map[string]json.RawMessage) string) error {
		if g.output == "json" {
			return printItems(g.stdout, "json", []json.RawMessage{raw}, true, nil)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return err
		}
		var rows []json.RawMessage
		json.Unmarshal(obj[list], &rows)
		if err := printItems(g.stdout, g.output, rows, false, cols); err != nil || g.output != "table" {
			return err
		}
		if headline != nil {
			fmt.Fprintln(g.stdout)
			fmt.Fprintln(g.stdout, headline(obj))
		}
		return nil
	}
	str := func(obj map[string]json.RawMessage, path ...string) string {
		v := obj[path[0]]
		for _, k := range path[1:] {
			var m map[string]json.RawMessage
			json.Unmarshal(v, &m)
			v = m[k]
		}
		var s any
		json.Unmarshal(v, &s)
		switch x := s.(type) {
		case string:
			return x
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			return strconv.FormatBool(x)
		}
		return ""
	}
	catCols := []column{{"CATEGORY", "category"}, {"GPU HOURS", "gpu_hours"}, {"PERCENT", "percent"}}
	summary := &cobra.Command{Use: "summary", Short: "A site's headline figures for a period", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := get(c, "/v1/finance/summary", false)
			if err != nil {
				return err
			}
			return show(raw, "utilization", catCols, func(o map[string]json.RawMessage) string {
				return fmt.Sprintf("%s %s (%s GPUs): sold %s%%; recognized %s, invoiced %s %s; deferred %s, unbilled %s; backlog %s (top customer %s%%); cost %s, gross margin %s%%, %s per delivered GPU-hour",
					str(o, "site_name"), str(o, "period"), str(o, "gpus"), str(o, "sold_percent"), str(o, "recognized", "amount"), str(o, "invoiced", "amount"), str(o, "currency"),
					str(o, "deferred", "amount"), str(o, "unbilled", "amount"), str(o, "backlog", "amount"), str(o, "top1_revenue_percent"),
					str(o, "cost", "amount"), str(o, "gross_margin_percent"), str(o, "cost_per_delivered_gpu_hour"))
			})
		}}
	utilization := &cobra.Command{Use: "utilization", Short: "GPU-hours by category (down, maintenance, each class, internal, spare, idle)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := get(c, "/v1/finance/utilization", false)
			if err != nil {
				return err
			}
			return show(raw, "categories", catCols, func(o map[string]json.RawMessage) string {
				busy := ""
				if b := str(o, "committed_busy", "percent"); b != "" {
					busy = fmt.Sprintf("; committed GPU-hours %s%% busy (of %s reported)", b, str(o, "committed_busy", "telemetry_gpu_hours"))
				}
				return fmt.Sprintf("%s %s: %s GPUs, sold %s%% of the fleet's GPU-hours%s", str(o, "site_name"), str(o, "period"), str(o, "gpus"), str(o, "sold_percent"), busy)
			})
		}}
	revenue := &cobra.Command{Use: "revenue", Short: "Recognized and invoiced revenue, deferred and unbilled balances, by tenant, class and kind", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := get(c, "/v1/finance/revenue", true)
			if err != nil {
				return err
			}
			return show(raw, "by_class", []column{{"CLASS", "key"}, {"RECOGNIZED", "recognized.amount"}, {"PRICE/GPU-H", "price_per_gpu_hour"}}, func(o map[string]json.RawMessage) string {
				return fmt.Sprintf("recognized %s + Δdeferred (%s → %s) − Δunbilled (%s → %s) = invoiced %s %s: the identity %s",
					str(o, "recognized", "amount"), str(o, "deferred_start", "amount"), str(o, "deferred_end", "amount"),
					str(o, "unbilled_start", "amount"), str(o, "unbilled_end", "amount"), str(o, "invoiced", "amount"), str(o, "currency"), str(o, "identity"))
			})
		}}
	backlog := &cobra.Command{Use: "backlog", Short: "Remaining performance obligations by year, concentration and remaining contract length", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := get(c, "/v1/finance/backlog", true)
			if err != nil {
				return err
			}
			return show(raw, "by_year", []column{{"YEAR", "year"}, {"BACKLOG", "amount.amount"}}, func(o map[string]json.RawMessage) string {
				return fmt.Sprintf("backlog %s %s; take-or-pay %s%% of the trailing year's revenue; top customer %s%% of backlog, top five %s%%; weighted remaining %s years",
					str(o, "total", "amount"), str(o, "currency"), str(o, "take_or_pay_share"), str(o, "top1_backlog", "percent"), str(o, "top5_backlog", "percent"), str(o, "weighted_remaining_years"))
			})
		}}
	economics := &cobra.Command{Use: "economics", Short: "Cost per delivered GPU-hour, margin, break-even, payback, and rent or train", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := get(c, "/v1/finance/economics", false)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printItems(g.stdout, "json", []json.RawMessage{raw}, true, nil)
			}
			return printItems(g.stdout, g.output, []json.RawMessage{raw}, false, []column{{"REVENUE", "revenue.amount"}, {"COST", "cost.amount"},
				{"MARGIN %", "gross_margin_percent"}, {"COST/GPU-H", "cost_per_delivered_gpu_hour"}, {"BREAK-EVEN %", "break_even_utilization_percent"},
				{"SOLD %", "sold_utilization_percent"}, {"PAYBACK Y", "payback_years"}, {"INTERNAL AT TRANSFER", "internal_at_transfer_price.amount"},
				{"INTERNAL OPPORTUNITY", "internal_opportunity_cost.amount"}, {"RENT OR TRAIN", "rent_or_train"}})
		}}
	for _, c := range []*cobra.Command{summary, utilization, revenue, backlog, economics} {
		c.Flags().StringVar(&site, "site", "", "site name or id (default: the only site)")
		c.Flags().StringVar(&period, "period", "", "2027-01, 2027-Q1, 2027-H1 or 2027 (a running one ends now)")
		c.MarkFlagRequired("period")
	}
	for _, c := range []*cobra.Command{revenue, backlog} {
		c.Flags().StringVar(&currency, "currency", "", "ISO 4217 (default USD)")
	}
	var tenant, rate, duration, baseline string
	whatif := &cobra.Command{Use: "whatif --lease-tenant T --rate 1.85 --duration 3y", Short: "Compare the current mix with leasing the whole site", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			d, err := ParseDuration(duration)
			if err != nil {
				return fmt.Errorf("--duration: %w", err)
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := filters(map[string]string{"site": site, "lease_tenant": tenant, "rate_per_gpu_hour": rate, "baseline": baseline})
			q.Set("duration_s", strconv.FormatInt(int64(d.Seconds()), 10))
			raw, err := cl.Raw(c.Context(), http.MethodGet, "/v1/finance/whatif", q, nil, "")
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printItems(g.stdout, "json", []json.RawMessage{raw}, true, nil)
			}
			var w struct {
				Current, Lease json.RawMessage
			}
			json.Unmarshal(raw, &w)
			if err := printItems(g.stdout, g.output, []json.RawMessage{w.Current, w.Lease}, false, []column{{"SCENARIO", "name"}, {"REVENUE", "revenue.amount"},
				{"COST", "cost.amount"}, {"MARGIN", "margin.amount"}, {"MARGIN %", "margin_percent"}, {"SOLD %", "sold_percent"}, {"BACKLOG", "backlog.amount"},
				{"TENANT SCOPE 2 KG", "tenant_scope2_kg_co2e"}, {"TENANT SCOPE 1 KG", "tenant_scope1_kg_co2"}}); err != nil || g.output != "table" {
				return err
			}
			var o map[string]json.RawMessage
			json.Unmarshal(raw, &o)
			fmt.Fprintf(g.stdout, "\nlease of %s GPUs at %s per GPU-hour (list %s, %s%% off) from %s; baseline %s\n", str(o, "leased_gpus"), str(o, "rate_per_gpu_hour"),
				str(o, "list_reserved_rate_per_gpu_hour"), str(o, "discount_percent"), str(o, "start"), str(o, "baseline"))
			return nil
		}}
	whatif.Flags().StringVar(&site, "site", "", "site name or id (default: the only site)")
	whatif.Flags().StringVar(&tenant, "lease-tenant", "", "the tenant the site would be leased to")
	whatif.Flags().StringVar(&rate, "rate", "", "the lease's price per GPU-hour, e.g. 1.85")
	whatif.Flags().StringVar(&duration, "duration", "", "the lease's term and the horizon, e.g. 3y")
	whatif.Flags().StringVar(&baseline, "baseline", "", "the period the current mix is read from (default: last month)")
	for _, f := range []string{"lease-tenant", "rate", "duration"} {
		whatif.MarkFlagRequired(f)
	}
	cmd.AddCommand(summary, utilization, revenue, backlog, economics, whatif)
	return cmd
}
