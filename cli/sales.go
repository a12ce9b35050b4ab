package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
)

var priceCols = []column{{"SKU", "sku"}, {"CLASS", "class"}, {"EFFECTIVE", "effective_at"}, {"PER GPU-HOUR", "price_per_gpu_hour"}, {"SPOT FLOOR µ", "spot_floor_micros"}, {"SPOT CEILING µ", "spot_ceiling_micros"}, {"CURRENCY", "currency"}, {"TERM DISCOUNTS", "term_discounts"}, {"VOLUME TIERS", "volume_tiers"}}

var quotaCols = []column{{"TENANT", "tenant_id"}, {"SKU", "sku"}, {"CLASS", "class"}, {"GPUS", "gpus"}, {"UPDATED", "updated_at"}}

var quoteCols = []column{{"ID", "id"}, {"STATE", "state"}, {"SKU", "shape.sku"}, {"GPUS", "shape.gpus"}, {"CLASS", "shape.class"}, {"WITHIN", "shape.within"}, {"START", "shape.start"}, {"END", "shape.end"},
	{"AVAILABLE", "offer.available"}, {"PER GPU-HOUR", "offer.price_per_gpu_hour"}, {"TOTAL µ", "offer.total_micros"}, {"TOPOLOGY", "offer.topology"}, {"EARLIEST START", "offer.earliest_start"}, {"ALTERNATIVES", "offer.alternatives"}, {"HOLD", "hold"}, {"EXPIRES", "expires_at"}}

var reservationCols = []column{{"ID", "id"}, {"TENANT", "tenant_id"}, {"STATE", "state"}, {"SKU", "shape.sku"}, {"GPUS", "shape.gpus"}, {"CLASS", "shape.class"}, {"WITHIN", "shape.within"}, {"START", "shape.start"}, {"END", "shape.end"}, {"CONTRACT", "contract_id"}, {"REASON", "reason"}}

var allocationCols = []column{{"ID", "id"}, {"NODE", "hostname"}, {"GPUS", "gpus"}, {"STATE", "state"}, {"ATTEMPTS", "attempts"}, {"READY", "ready_at"}, {"ENDED", "ended_at"}, {"REASON", "reason"}}

var contractCols = []column{{"ID", "id"}, {"TENANT", "tenant_id"}, {"KIND", "kind"}, {"SKU", "sku"}, {"PER GPU-HOUR", "terms.price_per_gpu_hour"}, {"BILLING", "terms.billing_schedule"}, {"COMMITMENT µ", "terms.commitment_micros"}, {"START", "start"}, {"END", "end"}}

var contractViewCols = append(append([]column{}, contractCols...), column{"GPUS", "delivery.contracted_gpus"}, column{"READY", "delivery.ready_gpus"}, column{"REMAINING µ", "delivery.remaining_commitment_micros"},
	column{"REPLACED THIS MONTH", "delivery.replacements_used"}, column{"REPLACEMENTS A MONTH", "terms.sla.replacements_per_month"})

var eventCols = []column{{"SEQ", "seq"}, {"AT", "at"}, {"KIND", "kind"}, {"SUBJECT", "subject"}, {"DATA", "data"}}

func priceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "price", Short: "The price book: list prices per SKU and class per GPU-hour, discounts, spot"}
	var in sales.PriceInput
	var class, effective string
	var terms, volumes []string
	set := &cobra.Command{Use: "set", Short: "Add a price book entry (a time series: earlier entries stay)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			in.Class = placement.Class(class)
			if effective != "" {
				t, err := ParseInstant(effective)
				if err != nil {
					return neocloud.Invalid("--effective", "%v", err)
				}
				in.EffectiveAt = &t
			}
			var err error
			if in.TermDiscounts, err = tiers("--term-discount", terms, true); err != nil {
				return err
			}
			if in.VolumeTiers, err = tiers("--volume-tier", volumes, false); err != nil {
				return err
			}
			return g.one(c.Context(), http.MethodPost, "/v1/prices", in, priceCols)
		}}
	set.Flags().StringVar(&in.SKU, "sku", "", "SKU name")
	set.Flags().StringVar(&class, "class", "", "reserved, on_demand, spot, lease or internal")
	set.Flags().StringVar(&in.List, "rate", "", "list price per GPU-hour in currency units, e.g. 2.05")
	set.Flags().StringVar(&in.SpotFloor, "spot-floor", "", "spot: price per GPU-hour at an idle site")
	set.Flags().StringVar(&in.SpotCeiling, "spot-ceiling", "", "spot: price per GPU-hour at a full site")
	set.Flags().StringVar(&in.Currency, "currency", "", "ISO 4217 code (default USD)")
	set.Flags().StringVar(&effective, "effective", "", "RFC 3339 instant it takes effect (default now)")
	set.Flags().StringSliceVar(&terms, "term-discount", nil, "DURATION=PERCENT, e.g. 30d=10,1y=20,3y=35")
	set.Flags().StringSliceVar(&volumes, "volume-tier", nil, "GPUS=PERCENT, e.g. 1024=5,8192=12")
	set.MarkFlagRequired("sku")
	set.MarkFlagRequired("class")

	var sku, cls string
	var current bool
	list := &cobra.Command{Use: "list", Short: "List the price book", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := filters(map[string]string{"sku": sku, "class": cls})
			if current {
				q.Set("current", "true")
			}
			return g.list(c.Context(), "/v1/prices", q, listFlags{limit: 1000}, priceCols)
		}}
	list.Flags().StringVar(&sku, "sku", "", "only this SKU")
	list.Flags().StringVar(&cls, "class", "", "only this class")
	list.Flags().BoolVar(&current, "current", false, "only the entries in effect now")
	cmd.AddCommand(set, list)
	return cmd
}

// tiers parses KEY=PERCENT pairs; keys are durations (term) or GPU counts.
func tiers(flag string, in []string, duration bool) ([]pricing.Tier, error) {
	var out []pricing.Tier
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		pct, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			return nil, neocloud.Invalid(flag, "%q is not KEY=PERCENT", kv)
		}
		var min int64
		if duration {
			d, err := ParseDuration(k)
			if err != nil {
				return nil, neocloud.Invalid(flag, "%v", err)
			}
			min = int64(d / time.Second)
		} else if min, err = strconv.ParseInt(k, 10, 64); err != nil {
			return nil, neocloud.Invalid(flag, "%q is not a GPU count", k)
		}
		out = append(out, pricing.Tier{Min: min, Percent: pct})
	}
	return out, nil
}

func quotaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "quota", Short: "Per-tenant quotas: GPUs held at once per SKU and class"}
	var body struct {
		Tenant string `json:"tenant"`
		SKU    string `json:"sku"`
		Class  string `json:"class"`
		GPUs   int64  `json:"gpus"`
	}
	set := &cobra.Command{Use: "set", Short: "Set a tenant's quota", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.one(c.Context(), http.MethodPut, "/v1/quotas", body, quotaCols)
		}}
	set.Flags().StringVar(&body.Tenant, "tenant", "", "tenant name or id")
	set.Flags().StringVar(&body.SKU, "sku", "", "SKU name")
	set.Flags().StringVar(&body.Class, "class", "", "reserved, on_demand or spot")
	set.Flags().Int64Var(&body.GPUs, "gpus", 0, "GPUs the tenant may hold at once")
	for _, f := range []string{"tenant", "sku", "class", "gpus"} {
		set.MarkFlagRequired(f)
	}
	var tenantRef string
	list := &cobra.Command{Use: "list", Short: "List quotas", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/quotas", filters(map[string]string{"tenant": tenantRef}), listFlags{limit: 1000}, quotaCols)
		}}
	list.Flags().StringVar(&tenantRef, "tenant", "", "tenant name or id (operators)")
	cmd.AddCommand(set, list)
	return cmd
}

// shapeFlags are the flags that describe a shape, shared by quote create
// and reservation create.
type shapeFlags struct {
	tenant, site, sku, class, start, duration, within, delivery string
	gpus                                                        int
}

func (f *shapeFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.tenant, "tenant", "", "tenant name or id (operators)")
	c.Flags().StringVar(&f.site, "site", "", "site name or id (default: the only site selling the SKU)")
	c.Flags().StringVar(&f.sku, "sku", "", "SKU name, e.g. h100-sxm5-80gb")
	c.Flags().IntVar(&f.gpus, "gpus", 0, "GPUs: whole nodes' worth, or one partition size")
	c.Flags().StringVar(&f.class, "class", "reserved", "reserved, on_demand or spot")
	c.Flags().StringVar(&f.start, "start", "", "RFC 3339 start (default now)")
	c.Flags().StringVar(&f.duration, "duration", "", "e.g. 30d (reserved only)")
	c.Flags().StringVar(&f.within, "within", "", "topology level every node must share: pod, su, rack…")
	c.Flags().StringVar(&f.delivery, "delivery", "", "managed (default) or bare_metal")
}

func (f *shapeFlags) input() (sales.ShapeInput, error) {
	in := sales.ShapeInput{Tenant: f.tenant, Site: f.site, SKU: f.sku, GPUs: f.gpus, Class: placement.Class(f.class), Within: f.within, Delivery: sales.Delivery(f.delivery)}
	if f.start != "" {
		t, err := ParseInstant(f.start)
		if err != nil {
			return in, neocloud.Invalid("--start", "%v", err)
		}
		in.Start = &t
	}
	if f.duration != "" {
		d, err := ParseDuration(f.duration)
		if err != nil {
			return in, neocloud.Invalid("--duration", "%v", err)
		}
		in.DurationS = int64(d / time.Second)
	}
	return in, nil
}

func quoteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "quote", Short: "Quotes: priced, time-limited offers, optionally holding capacity"}
	var sf shapeFlags
	var hold bool
	create := &cobra.Command{Use: "create", Short: "Ask for a quote; with --hold, hold the capacity until it expires", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			in, err := sf.input()
			if err != nil {
				return err
			}
			return g.one(c.Context(), http.MethodPost, "/v1/quotes", sales.QuoteInput{ShapeInput: in, Hold: hold}, quoteCols)
		}}
	sf.add(create)
	create.Flags().BoolVar(&hold, "hold", false, "hold the capacity until the quote expires")
	create.MarkFlagRequired("sku")
	create.MarkFlagRequired("gpus")

	var lf listFlags
	list := &cobra.Command{Use: "list", Short: "List quotes", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/quotes", nil, lf, quoteCols)
		}}
	lf.add(list)
	show := &cobra.Command{Use: "show ID", Short: "Show a quote", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodGet, "/v1/quotes/"+url.PathEscape(args[0]), nil, quoteCols)
		}}
	cmd.AddCommand(create, list, show)
	return cmd
}

func reservationCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "reservation", Aliases: []string{"rsv"}, Short: "Reservations: capacity over [start, end) on concrete nodes"}
	var sf shapeFlags
	var quote, checkpoint string
	var el sales.ElasticInput
	create := &cobra.Command{Use: "create", Short: "Reserve capacity from a quote (--quote) or directly with the quote's flags; --class internal with --min-gpus etc. for elastic internal work", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			in := sales.ReserveInput{Quote: quote}
			if quote == "" {
				var err error
				if in.ShapeInput, err = sf.input(); err != nil {
					return err
				}
			}
			if el.MinGPUs > 0 || el.MaxGPUs > 0 || el.StepGPUs > 0 {
				if checkpoint != "" {
					d, err := ParseDuration(checkpoint)
					if err != nil {
						return neocloud.Invalid("--checkpoint", "%v", err)
					}
					el.CheckpointS = int64(d / time.Second)
				}
				in.Elastic = &el
			}
			return g.one(c.Context(), http.MethodPost, "/v1/reservations", in, reservationCols)
		}}
	sf.add(create)
	create.Flags().StringVar(&quote, "quote", "", "quote id (its hold becomes the reservation)")
	create.Flags().IntVar(&el.MinGPUs, "min-gpus", 0, "elastic internal work: run on at least this many GPUs")
	create.Flags().IntVar(&el.MaxGPUs, "max-gpus", 0, "elastic internal work: grow into idle capacity up to this many")
	create.Flags().IntVar(&el.StepGPUs, "step-gpus", 0, "elastic internal work: grow and shrink by this many")
	create.Flags().StringVar(&el.StepWithin, "step-within", "", "elastic internal work: the level each step lies within, e.g. su")
	create.Flags().StringVar(&checkpoint, "checkpoint", "", "elastic internal work: checkpoint interval, e.g. 30m")

	var lf listFlags
	var state, class string
	list := &cobra.Command{Use: "list", Short: "List reservations", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/reservations", filters(map[string]string{"state": state, "class": class}), lf, reservationCols)
		}}
	lf.add(list)
	list.Flags().StringVar(&state, "state", "", "only this state")
	list.Flags().StringVar(&class, "class", "", "only this class")

	var topology string
	show := &cobra.Command{Use: "show ID", Short: "Show a reservation (--topology slurm|k8s prints its nodes for the tenant's scheduler)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := "/v1/reservations/" + url.PathEscape(args[0])
			if topology == "" {
				return g.one(c.Context(), http.MethodGet, path, nil, reservationCols)
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			b, err := cl.Raw(c.Context(), http.MethodGet, path+"/topology", url.Values{"format": {topology}}, nil, "")
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(b)
			return err
		}}
	show.Flags().StringVar(&topology, "topology", "", "slurm (topology.conf) or k8s (kubectl label commands)")

	allocs := &cobra.Command{Use: "allocations ID", Short: "List a reservation's allocations", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.list(c.Context(), "/v1/reservations/"+url.PathEscape(args[0])+"/allocations", nil, listFlags{limit: 1000}, allocationCols)
		}}

	var to, by string
	extend := &cobra.Command{Use: "extend ID", Short: "Extend a reservation on the same nodes (--to INSTANT or --by DURATION)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var end time.Time
			switch {
			case to != "" && by == "":
				t, err := ParseInstant(to)
				if err != nil {
					return neocloud.Invalid("--to", "%v", err)
				}
				end = t
			case by != "" && to == "":
				d, err := ParseDuration(by)
				if err != nil {
					return neocloud.Invalid("--by", "%v", err)
				}
				cl, err := g.client()
				if err != nil {
					return err
				}
				var r sales.Reservation
				if err := cl.Do(c.Context(), http.MethodGet, "/v1/reservations/"+url.PathEscape(args[0]), nil, nil, &r); err != nil {
					return err
				}
				if r.Shape.End == nil {
					return neocloud.Invalid("--by", "reservation %s runs until cancelled", r.ID)
				}
				end = r.Shape.End.Add(d)
			default:
				return neocloud.Invalid("--to", "give exactly one of --to and --by")
			}
			return g.one(c.Context(), http.MethodPost, "/v1/reservations/"+url.PathEscape(args[0])+"/extend", map[string]any{"end": end}, reservationCols)
		}}
	extend.Flags().StringVar(&to, "to", "", "new end, RFC 3339")
	extend.Flags().StringVar(&by, "by", "", "extend by a duration, e.g. 7d")

	cancel := &cobra.Command{Use: "cancel ID", Short: "Cancel a reservation (running capacity is released through sanitize)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodPost, "/v1/reservations/"+url.PathEscape(args[0])+"/cancel", nil, reservationCols)
		}}
	cmd.AddCommand(create, list, show, allocs, extend, cancel)
	return cmd
}

func contractCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "contract", Short: "Contracts: the commercial terms of reservations"}
	var lf listFlags
	list := &cobra.Command{Use: "list", Short: "List contracts", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/contracts", nil, lf, contractCols)
		}}
	lf.add(list)
	show := &cobra.Command{Use: "show ID", Short: "Show a contract with its delivery progress and remaining commitment", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodGet, "/v1/contracts/"+url.PathEscape(args[0]), nil, contractViewCols)
		}}
	var in sales.LeaseInput
	var kind, start, duration, every string
	create := &cobra.Command{Use: "create", Short: "Sign a lease of a whole site or hall (--kind lease), optionally delivered in phases", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if kind != "lease" {
				return neocloud.Invalid("--kind", "contracts created directly are leases (--kind lease); reserved, on-demand and spot contracts come with their reservations")
			}
			t, err := ParseInstant(start)
			if err != nil {
				return neocloud.Invalid("--start", "%v", err)
			}
			in.Start = t
			d, err := ParseDuration(duration)
			if err != nil {
				return neocloud.Invalid("--duration", "%v", err)
			}
			in.DurationS = int64(d / time.Second)
			if every != "" {
				e, err := ParseDuration(every)
				if err != nil {
					return neocloud.Invalid("--phase-every", "%v", err)
				}
				in.PhaseEveryS = int64(e / time.Second)
			}
			return g.one(c.Context(), http.MethodPost, "/v1/contracts", in, contractViewCols)
		}}
	create.Flags().StringVar(&kind, "kind", "lease", "lease")
	create.Flags().StringVar(&in.Tenant, "tenant", "", "tenant name or id")
	create.Flags().StringVar(&in.Site, "site", "", "site name or id")
	create.Flags().StringVar(&in.Domain, "hall", "", "a hall (or any domain path, e.g. h1/p03) instead of the whole site")
	create.Flags().StringVar(&in.SKU, "sku", "", "SKU (default: the site's only one)")
	create.Flags().StringVar(&start, "start", "", "RFC 3339 start")
	create.Flags().StringVar(&duration, "duration", "", "term, e.g. 3y")
	create.Flags().StringVar(&in.Rate, "rate", "", "price per GPU-hour in currency units, e.g. 1.85")
	create.Flags().IntVar(&in.PhaseGPUs, "phase-gpus", 0, "deliver this many GPUs per phase")
	create.Flags().StringVar(&every, "phase-every", "", "time between phases, e.g. 7d")
	create.Flags().IntVar(&in.Replacements, "replacements", 0, "nodes the tenant may have replaced on request each month (default: the standard SLA's 4)")
	create.Flags().BoolVar(&in.PowerPassThrough, "power-pass-through", false, "bill energy at cost: kWh × PUE × the site's energy price")
	create.Flags().StringVar(&in.OverageRate, "overage-rate", "", "price per GPU-hour beyond the commitment (default: no overage billed)")
	for _, f := range []string{"tenant", "site", "start", "duration", "rate"} {
		create.MarkFlagRequired(f)
	}
	cmd.AddCommand(create, list, show)
	return cmd
}

func eventsCmd(g *globals) *cobra.Command {
	var follow bool
	var after string
	var limit int
	cmd := &cobra.Command{Use: "events", Short: "Events: reservation and allocation changes, quote expiries, node replacements (--follow streams them)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if !follow {
				return g.list(c.Context(), "/v1/events", filters(map[string]string{"after": after}), listFlags{limit: limit}, eventCols)
			}
			return cl.Stream(c.Context(), "/v1/events", nil, after, func(id, event string, data []byte) error {
				if g.output == "json" {
					fmt.Fprintln(g.stdout, string(data))
					return nil
				}
				var e sales.Event
				json.Unmarshal(data, &e)
				d, _ := json.Marshal(e.Data)
				fmt.Fprintf(g.stdout, "%d\t%s\t%s\t%s\t%s\n", e.Seq, e.At.Format(time.RFC3339), e.Kind, e.Subject, d)
				return nil
			})
		}}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "stream new events until interrupted")
	cmd.Flags().StringVar(&after, "after", "", "resume after this event seq")
	cmd.Flags().IntVar(&limit, "limit", 100, "events per page (without --follow)")
	return cmd
}

func internalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "internal", Short: "The operator's own training on idle capacity (the hybrid play)"}
	var period, from, to string
	report := &cobra.Command{Use: "report", Short: "GPU-hours internal work used and lost to reclaims, and the reclaims, over a period", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.one(c.Context(), http.MethodGet, "/v1/internal/report?"+filters(map[string]string{"period": period, "from": from, "to": to}).Encode(), nil,
				[]column{{"START", "start"}, {"END", "end"}, {"GPU-HOURS USED", "gpu_hours_used"}, {"GPU-HOURS LOST", "gpu_hours_lost"}, {"RECLAIMS", "reclaims"}, {"SHRINKS", "shrinks"}, {"EVICTIONS", "evictions"}, {"GPUS RUNNING", "gpus_running_now"}})
		}}
	report.Flags().StringVar(&period, "period", "", "2027-01, 2027-Q1 or 2027-H1 (UTC)")
	report.Flags().StringVar(&from, "from", "", "RFC 3339 start (instead of --period)")
	report.Flags().StringVar(&to, "to", "", "RFC 3339 end")
	cmd.AddCommand(report)
	return cmd
}

var maintenanceCols = []column{{"ID", "id"}, {"STATE", "state"}, {"START", "start"}, {"END", "end"}, {"REASON", "reason"}, {"BATCHES", "batches"}, {"TOUCHED", "touched_reservations"}, {"MOVED", "moved"}}

func maintenanceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "maintenance", Short: "Planned maintenance: on the calendar, with notice, rolled within each reservation's limits"}
	var in sales.MaintenanceInput
	var window string
	create := &cobra.Command{Use: "create", Short: "Plan maintenance of --nodes or a --domain in --window START/DURATION", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, d, ok := strings.Cut(window, "/")
			if !ok {
				return neocloud.Invalid("--window", "want START/DURATION, e.g. 2027-02-01T02:00:00Z/4h")
			}
			t, err := ParseInstant(st)
			if err != nil {
				return neocloud.Invalid("--window", "%v", err)
			}
			dur, err := ParseDuration(d)
			if err != nil {
				return neocloud.Invalid("--window", "%v", err)
			}
			in.Start, in.DurationS = t, int64(dur/time.Second)
			return g.one(c.Context(), http.MethodPost, "/v1/maintenance", in, maintenanceCols)
		}}
	create.Flags().StringVar(&in.Site, "site", "", "site name or id")
	create.Flags().StringSliceVar(&in.Nodes, "nodes", nil, "node hostnames or ids")
	create.Flags().StringVar(&in.Domain, "domain", "", "every node below this topology path, e.g. h1/p03")
	create.Flags().StringVar(&window, "window", "", "START/DURATION each node is out, e.g. 2027-02-01T02:00:00Z/4h")
	create.Flags().StringVar(&in.Reason, "reason", "", "why")
	for _, f := range []string{"site", "window", "reason"} {
		create.MarkFlagRequired(f)
	}
	var site string
	list := &cobra.Command{Use: "list", Short: "List planned maintenance", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/maintenance", filters(map[string]string{"site": site}), listFlags{limit: 1000}, maintenanceCols)
		}}
	list.Flags().StringVar(&site, "site", "", "site name or id")
	cancel := &cobra.Command{Use: "cancel ID", Short: "Cancel maintenance that has not started", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.one(c.Context(), http.MethodPost, "/v1/maintenance/"+url.PathEscape(args[0])+"/cancel", nil, maintenanceCols)
		}}
	cmd.AddCommand(create, list, cancel)
	return cmd
}
