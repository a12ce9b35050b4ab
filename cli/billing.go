package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud/billing"
)

var usageCols = []column{{"KEY", "key"}, {"CLASS", "class"}, {"GPU-HOURS", "gpu_hours"}, {"GPU-SECONDS", "gpu_seconds"}, {"ENERGY kWh", "energy_kwh"},
	{"GPU ENERGY kWh", "gpu_energy_kwh"}, {"ENERGY SOURCE", "energy_source"}, {"RECORDS", "records"}}

var invoiceCols = []column{{"NUMBER", "number"}, {"KIND", "kind"}, {"STATE", "state"}, {"TENANT", "tenant_name"}, {"PERIOD", "period"}, {"CURRENCY", "currency"},
	{"SUBTOTAL", "subtotal"}, {"TAX", "tax"}, {"TOTAL", "total"}, {"ISSUED", "issued_at"}, {"REFERS TO", "refers_to_number"}, {"ID", "id"}}

var lineCols = []column{{"#", "n"}, {"KIND", "kind"}, {"DESCRIPTION", "description"}, {"QUANTITY", "quantity"}, {"UNIT", "unit"}, {"UNIT PRICE", "unit_price"},
	{"AMOUNT", "amount"}, {"RESERVATION", "reservation_id"}}

var periodCols = []column{{"PERIOD", "period"}, {"START", "start"}, {"END", "end"}, {"CLOSED", "closed_at"}, {"BY", "closed_by"}, {"INVOICES", "invoices"}}

func usageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "usage", Short: "Metered usage: GPU-seconds and energy per allocation and hour"}
	var tenant, period, by string
	show := &cobra.Command{Use: "show", Short: "A tenant's usage in a month by day, hour or reservation", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.items(c, "/v1/usage", filters(map[string]string{"tenant": tenant, "period": period, "by": by}), usageCols)
		}}
	show.Flags().StringVar(&tenant, "tenant", "", "tenant name or id (a tenant token: its own)")
	show.Flags().StringVar(&period, "period", "", "month, e.g. 2027-01")
	show.Flags().StringVar(&by, "by", "day", "day, hour or reservation")
	show.MarkFlagRequired("period")

	var dperiod string
	derive := &cobra.Command{Use: "derive", Short: "Derive a month's usage again (after late readings); invoiced records get corrections billed as adjustments", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.one(c.Context(), http.MethodPost, "/v1/usage/derive", map[string]string{"period": dperiod},
				[]column{{"FROM", "from"}, {"TO", "to"}, {"INSERTED", "inserted"}, {"UPDATED", "updated"}, {"UNCHANGED", "unchanged"}})
		}}
	derive.Flags().StringVar(&dperiod, "period", "", "month, e.g. 2027-01")
	derive.MarkFlagRequired("period")
	cmd.AddCommand(show, derive)
	return cmd
}

// items fetches an unpaged list answer and prints its items.
func (g *globals) items(c *cobra.Command, path string, q url.Values, cols []column) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := cl.Do(c.Context(), http.MethodGet, path, q, nil, &page); err != nil {
		return err
	}
	return printItems(g.stdout, g.output, page.Items, false, cols)
}

func invoiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "invoice", Short: "Invoices and credit notes: list, show, export, draft, close a month, credit"}
	var lf listFlags
	var tenant, period, kind string
	list := &cobra.Command{Use: "list", Short: "List finalized invoices and credit notes", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.list(c.Context(), "/v1/invoices", filters(map[string]string{"tenant": tenant, "period": period, "kind": kind}), lf, invoiceCols)
		}}
	lf.add(list)
	list.Flags().StringVar(&tenant, "tenant", "", "tenant name or id")
	list.Flags().StringVar(&period, "period", "", "month, e.g. 2027-01")
	list.Flags().StringVar(&kind, "kind", "", "invoice or credit_note")

	show := &cobra.Command{Use: "show ID|NUMBER", Short: "Show an invoice with its lines", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			raw, err := cl.Raw(c.Context(), http.MethodGet, "/v1/invoices/"+url.PathEscape(args[0]), nil, nil, "")
			if err != nil {
				return err
			}
			return g.printInvoices([]json.RawMessage{raw}, true)
		}}

	var dtenant, dperiod string
	draft := &cobra.Command{Use: "draft", Short: "A tenant's invoice for an open month as it stands (not numbered)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var page struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := cl.Do(c.Context(), http.MethodGet, "/v1/invoices/draft", filters(map[string]string{"tenant": dtenant, "period": dperiod}), nil, &page); err != nil {
				return err
			}
			return g.printInvoices(page.Items, false)
		}}
	draft.Flags().StringVar(&dtenant, "tenant", "", "tenant name or id (a tenant token: its own)")
	draft.Flags().StringVar(&dperiod, "period", "", "month, e.g. 2027-01 (default: the current one)")

	var format, out string
	export := &cobra.Command{Use: "export ID|NUMBER", Short: "Export an invoice as json, csv or pdf", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			b, err := cl.Raw(c.Context(), http.MethodGet, "/v1/invoices/"+url.PathEscape(args[0])+"/export", url.Values{"format": {format}}, nil, "")
			if err != nil {
				return err
			}
			return g.writeOut(out, b)
		}}
	export.Flags().StringVar(&format, "format", "pdf", "json, csv or pdf")
	export.Flags().StringVar(&out, "out", "", "file to write (default: standard output)")

	var cperiod string
	closeCmd := &cobra.Command{Use: "close", Short: "Close a month: issue every tenant's numbered, immutable invoices", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "closing %s: deriving its last usage and rating every tenant…\n", cperiod)
			var res struct {
				Period   json.RawMessage   `json:"period"`
				Invoices []json.RawMessage `json:"invoices"`
			}
			if err := cl.Do(c.Context(), http.MethodPost, "/v1/billing/periods", nil, map[string]string{"period": cperiod}, &res); err != nil {
				return err
			}
			if g.output == "json" {
				return printItems(g.stdout, g.output, []json.RawMessage{mustRaw(res)}, true, nil)
			}
			if err := printItems(g.stdout, g.output, res.Invoices, false, invoiceCols); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "%s closed: %d invoices\n", cperiod, len(res.Invoices))
			return nil
		}}
	closeCmd.Flags().StringVar(&cperiod, "period", "", "month, e.g. 2027-01")
	closeCmd.MarkFlagRequired("period")

	var in billing.CreditInput
	credit := &cobra.Command{Use: "credit ID|NUMBER", Short: "Issue a numbered credit note against a finalized invoice", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			raw, err := cl.Raw(c.Context(), http.MethodPost, "/v1/invoices/"+url.PathEscape(args[0])+"/credit-notes", nil, in, "")
			if err != nil {
				return err
			}
			return g.printInvoices([]json.RawMessage{raw}, true)
		}}
	credit.Flags().StringVar(&in.Amount, "amount", "", "amount before tax in currency units (default: all not yet credited)")
	credit.Flags().StringVar(&in.Reason, "reason", "", "why the invoice is credited")
	credit.MarkFlagRequired("reason")

	periods := &cobra.Command{Use: "periods", Short: "List closed months", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.items(c, "/v1/billing/periods", nil, periodCols)
		}}
	explain := &cobra.Command{Use: "explain ID|NUMBER LINE", Short: "What an invoice line rests on: usage records, reservations, or the down intervals behind a credit", Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			raw, err := cl.Raw(c.Context(), http.MethodGet, "/v1/invoices/"+url.PathEscape(args[0])+"/lines/"+url.PathEscape(args[1])+"/sources", nil, nil, "")
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printItems(g.stdout, g.output, []json.RawMessage{raw}, true, nil)
			}
			var src struct {
				Line         json.RawMessage   `json:"line"`
				Records      []json.RawMessage `json:"records"`
				Reservations []json.RawMessage `json:"reservations"`
				GPUSeconds   int64             `json:"gpu_seconds"`
				EnergyJ      int64             `json:"energy_j"`
				Credit       *struct {
					Down []json.RawMessage `json:"down"`
				} `json:"credit"`
			}
			if err := json.Unmarshal(raw, &src); err != nil {
				return err
			}
			if err := printItems(g.stdout, g.output, []json.RawMessage{src.Line}, true, lineCols); err != nil {
				return err
			}
			fmt.Fprintln(g.stdout)
			switch {
			case len(src.Records) > 0:
				fmt.Fprintf(g.stdout, "%d usage records: %d GPU-seconds, %d J\n", len(src.Records), src.GPUSeconds, src.EnergyJ)
				return printItems(g.stdout, g.output, src.Records, false, []column{{"RECORD", "id"}, {"ALLOCATION", "allocation_id"}, {"HOUR", "hour"}, {"REV", "rev"},
					{"NODE", "node_id"}, {"GPUS", "gpus"}, {"GPU-SECONDS", "gpu_seconds"}, {"ENERGY J", "energy_j"}, {"SOURCE", "energy_source"}})
			case len(src.Reservations) > 0:
				fmt.Fprintf(g.stdout, "%d GPU-seconds committed\n", src.GPUSeconds)
				return printItems(g.stdout, g.output, src.Reservations, false, []column{{"RESERVATION", "reservation_id"}, {"GPUS", "gpus"}, {"FROM", "from"}, {"TO", "to"}, {"GPU-SECONDS", "gpu_seconds"}})
			case src.Credit != nil:
				return printItems(g.stdout, g.output, src.Credit.Down, false, downCols)
			}
			return nil
		}}
	cmd.AddCommand(list, show, draft, export, closeCmd, credit, periods, explain)
	return cmd
}

var downCols = []column{{"FROM", "from"}, {"TO", "to"}, {"CAUSE", "cause"}, {"NODE", "node"}, {"GPUS", "gpus"}, {"SLOT", "slot"}, {"EVIDENCE", "evidence"}}

func creditsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "credits", Short: "SLA credits: availability per reservation and month from the control plane's own health data"}
	var tenant, period string
	show := &cobra.Command{Use: "show", Short: "A tenant's availability and credits in a month, with the down intervals behind them", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var page struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := cl.Do(c.Context(), http.MethodGet, "/v1/credits", filters(map[string]string{"tenant": tenant, "period": period}), nil, &page); err != nil {
				return err
			}
			if err := printItems(g.stdout, g.output, page.Items, false, []column{{"RESERVATION", "reservation_id"}, {"GPU-MINUTES", "gpu_minutes"},
				{"DOWN", "down_gpu_minutes"}, {"AVAILABILITY %", "availability_percent"}, {"TIER", "tier"}, {"CREDIT %", "credit_percent"}, {"CHARGE", "charge"}, {"CREDIT", "credit"}, {"AS OF", "as_of"}}); err != nil || g.output != "table" {
				return err
			}
			for _, it := range page.Items {
				var c struct {
					ReservationID string            `json:"reservation_id"`
					Down          []json.RawMessage `json:"down"`
				}
				json.Unmarshal(it, &c)
				if len(c.Down) > 0 {
					fmt.Fprintf(g.stdout, "\n%s: down intervals\n", c.ReservationID)
					if err := printItems(g.stdout, g.output, c.Down, false, downCols); err != nil {
						return err
					}
				}
			}
			return nil
		}}
	show.Flags().StringVar(&tenant, "tenant", "", "tenant name or id (a tenant token: its own)")
	show.Flags().StringVar(&period, "period", "", "month, e.g. 2027-01")
	show.MarkFlagRequired("period")
	cmd.AddCommand(show)
	return cmd
}

func mustRaw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// printInvoices prints invoices: as the API's objects in json, else each
// summary followed by its lines.
func (g *globals) printInvoices(raw []json.RawMessage, single bool) error {
	if g.output == "json" {
		return printItems(g.stdout, g.output, raw, single, nil)
	}
	for i, r := range raw {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		if err := printItems(g.stdout, g.output, []json.RawMessage{r}, true, invoiceCols); err != nil {
			return err
		}
		var inv struct {
			Lines []json.RawMessage `json:"lines"`
		}
		json.Unmarshal(r, &inv)
		fmt.Fprintln(g.stdout)
		if err := printItems(g.stdout, g.output, inv.Lines, false, lineCols); err != nil {
			return err
		}
	}
	if len(raw) == 0 {
		fmt.Fprintln(g.stderr, "nothing to bill")
	}
	return nil
}

func billingCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "billing", Short: "Billing settings: the seller and tenants' billing profiles"}
	var s billing.Seller
	seller := &cobra.Command{Use: "seller", Short: "Show or set (with flags) the seller invoices name", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cols := []column{{"NAME", "name"}, {"ADDRESS", "address"}, {"TAX ID", "tax_id"}, {"INVOICE PREFIX", "invoice_prefix"}, {"CREDIT PREFIX", "credit_prefix"},
				{"TERMS DAYS", "payment_terms_days"}, {"CLOSE AFTER S", "close_after_s"}}
			if !c.Flags().Changed("name") {
				return g.one(c.Context(), http.MethodGet, "/v1/billing/seller", nil, cols)
			}
			return g.one(c.Context(), http.MethodPut, "/v1/billing/seller", s, cols)
		}}
	d := billing.DefaultSeller()
	seller.Flags().StringVar(&s.Name, "name", "", "legal name of the seller")
	seller.Flags().StringVar(&s.Address, "address", "", "postal address (use \\n between lines)")
	seller.Flags().StringVar(&s.TaxID, "tax-id", "", "tax registration number")
	seller.Flags().StringVar(&s.InvoicePrefix, "invoice-prefix", d.InvoicePrefix, "invoice number prefix")
	seller.Flags().StringVar(&s.CreditPrefix, "credit-prefix", d.CreditPrefix, "credit note number prefix")
	seller.Flags().IntVar(&s.PaymentTermsD, "payment-terms", d.PaymentTermsD, "days from issue to due date")
	seller.Flags().Int64Var(&s.CloseAfterS, "close-after-s", d.CloseAfterS, "close each month automatically this many seconds after it ends (-1: never)")

	var p billing.Profile
	profile := &cobra.Command{Use: "profile TENANT", Short: "Show or set (with flags) a tenant's billing profile and tax rate", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cols := []column{{"TENANT", "tenant_id"}, {"LEGAL NAME", "legal_name"}, {"ADDRESS", "address"}, {"TAX ID", "tax_id"}, {"TAX %", "tax_rate_percent"}}
			path := "/v1/tenants/" + url.PathEscape(args[0]) + "/billing"
			if c.Flags().NFlag() == 0 {
				return g.one(c.Context(), http.MethodGet, path, nil, cols)
			}
			return g.one(c.Context(), http.MethodPut, path, p, cols)
		}}
	profile.Flags().StringVar(&p.LegalName, "legal-name", "", "legal name on invoices")
	profile.Flags().StringVar(&p.Address, "address", "", "billing address")
	profile.Flags().StringVar(&p.TaxID, "tax-id", "", "tax registration number")
	profile.Flags().StringVar(&p.TaxRate, "tax-rate", "", "tax rate in percent, e.g. 8.25")
	cmd.AddCommand(seller, profile)
	return cmd
}

// writeOut writes an export to a file (saying so on stderr), or to stdout
// for "" or "-".
func (g *globals) writeOut(out string, b []byte) error {
	if out == "" || out == "-" {
		_, err := g.stdout.Write(b)
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "wrote %s (%d bytes)\n", out, len(b))
	return nil
}
