package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/billing"
)

type invoiceOut struct{ Body billing.Invoice }

func (s *Server) registerBilling() {
	bl := s.cfg.Billing

	register(s, opReadTenant, huma.Operation{OperationID: "show-usage", Method: http.MethodGet, Path: "/v1/usage", Summary: "Show usage",
		Description: "A tenant's metered usage in a month, summed by day, hour or reservation: GPU-seconds from allocations (per second, ready to release) and energy of record (node input energy, metered by the node's out-of-band controller or estimated from the GPUs' counters, as energy_source says). A tenant sees only its own.",
		Tags:        []string{"billing"}},
		func(ctx context.Context, in *struct {
			Tenant string `query:"tenant" doc:"Tenant name or id (a tenant's own by default)."`
			Period string `query:"period" required:"true" doc:"A month, e.g. 2027-01."`
			By     string `query:"by" default:"day" enum:"day,hour,reservation"`
		}) (*struct{ Body List[billing.UsageRow] }, error) {
			rows, err := bl.Usage(ctx, principal(ctx), in.Tenant, in.Period, in.By)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body List[billing.UsageRow] }{List[billing.UsageRow]{Items: nonNil(rows)}}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "derive-usage", Method: http.MethodPost, Path: "/v1/usage/derive", Summary: "Derive usage again",
		Description: "Derives a month's usage records again from the allocations and energy readings (after late readings were loaded). Unchanged records stay; a changed record not yet invoiced is updated; one already invoiced gets a correction that the next invoice bills as an adjustment.",
		Tags:        []string{"billing"}},
		func(ctx context.Context, in *struct {
			Body struct {
				Period string `json:"period" doc:"A month, e.g. 2027-01."`
			}
		}) (*struct{ Body billing.MeterResult }, error) {
			start, end, err := billing.Month("body.period", in.Body.Period)
			if err != nil {
				return nil, err
			}
			res, err := bl.Rederive(ctx, principal(ctx), start, end)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = in.Body.Period
			return &struct{ Body billing.MeterResult }{res}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "list-invoices", Method: http.MethodGet, Path: "/v1/invoices", Summary: "List invoices",
		Description: "Finalized invoices and credit notes by number; a tenant sees only its own.", Tags: []string{"billing"}},
		func(ctx context.Context, in *struct {
			PageParams
			Tenant string `query:"tenant" doc:"Tenant name or id."`
			Period string `query:"period" doc:"A month, e.g. 2027-01."`
			Kind   string `query:"kind" enum:"invoice,credit_note,"`
		}) (*struct{ Body List[billing.Invoice] }, error) {
			pg := in.page()
			invs, err := bl.Invoices(ctx, principal(ctx), in.Tenant, billing.InvoiceFilter{Period: in.Period, Kind: in.Kind}, pg)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return listOf(nonNil(invs), limitOf(pg), func(i billing.Invoice) string { return i.Number }), nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "draft-invoice", Method: http.MethodGet, Path: "/v1/invoices/draft", Summary: "Draft invoice",
		Description: "A tenant's invoice for an open month as it stands now, one per currency: not numbered, and it changes as usage is metered until the month closes.",
		Tags:        []string{"billing"}},
		func(ctx context.Context, in *struct {
			Tenant string `query:"tenant" doc:"Tenant name or id (a tenant's own by default)."`
			Period string `query:"period" doc:"A month, e.g. 2027-01 (default: the current one)."`
		}) (*struct{ Body List[billing.Invoice] }, error) {
			invs, err := bl.Draft(ctx, principal(ctx), in.Tenant, in.Period)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body List[billing.Invoice] }{List[billing.Invoice]{Items: nonNil(invs)}}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "get-invoice", Method: http.MethodGet, Path: "/v1/invoices/{invoice}", Summary: "Show an invoice",
		Description: "An invoice or credit note by id or number, with what has been credited against it.", Tags: []string{"billing"}},
		func(ctx context.Context, in *struct {
			Invoice string `path:"invoice"`
		}) (*invoiceOut, error) {
			inv, err := bl.InvoiceByRef(ctx, principal(ctx), in.Invoice)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &invoiceOut{inv}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "export-invoice", Method: http.MethodGet, Path: "/v1/invoices/{invoice}/export", Summary: "Export an invoice",
		Description: "The invoice or credit note as JSON, CSV (one row per line, then subtotal, tax and total) or PDF (with embedded fonts).", Tags: []string{"billing"}},
		func(ctx context.Context, in *struct {
			Invoice string `path:"invoice"`
			Format  string `query:"format" default:"json" enum:"json,csv,pdf"`
		}) (*struct {
			ContentType        string `header:"Content-Type"`
			ContentDisposition string `header:"Content-Disposition"`
			Body               []byte
		}, error) {
			inv, err := bl.InvoiceByRef(ctx, principal(ctx), in.Invoice)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			b, ct, err := billing.Export(inv, in.Format)
			if err != nil {
				return nil, neocloud.Invalid("query.format", "%v", err)
			}
			name := strings.NewReplacer("/", "-", "\"", "").Replace(inv.Number) + "." + in.Format
			return &struct {
				ContentType        string `header:"Content-Type"`
				ContentDisposition string `header:"Content-Disposition"`
				Body               []byte
			}{ct, `attachment; filename="` + name + `"`, b}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "create-credit-note", Method: http.MethodPost, Path: "/v1/invoices/{invoice}/credit-notes", Summary: "Issue a credit note",
		Description: "The only correction of a finalized invoice: a numbered credit note referencing it, for an amount before tax (default: all not yet credited) and the tax on it at the invoice's rate.",
		Tags:        []string{"billing"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct {
			Invoice string `path:"invoice"`
			Body    billing.CreditInput
		}) (*invoiceOut, error) {
			cn, err := bl.CreditNote(ctx, principal(ctx), in.Invoice, in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object, info(ctx).Tenant = cn.ID, cn.TenantID
			return &invoiceOut{cn}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "close-period", Method: http.MethodPost, Path: "/v1/billing/periods", Summary: "Close a month",
		Description: "Finalizes a month that has ended: derives its last usage, then issues every tenant's invoices, numbered without gaps and immutable. Months close in order, once each; the server also closes them itself (the seller's close_after_s after they end).",
		Tags:        []string{"billing"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct {
			Body struct {
				Period string `json:"period" doc:"A month, e.g. 2027-01."`
			}
		}) (*struct {
			Body struct {
				Period   billing.Period    `json:"period"`
				Invoices []billing.Invoice `json:"invoices"`
			}
		}, error) {
			p, invs, err := bl.Close(ctx, principal(ctx), in.Body.Period)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = p.Period
			out := &struct {
				Body struct {
					Period   billing.Period    `json:"period"`
					Invoices []billing.Invoice `json:"invoices"`
				}
			}{}
			out.Body.Period, out.Body.Invoices = p, nonNil(invs)
			return out, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-periods", Method: http.MethodGet, Path: "/v1/billing/periods", Summary: "List closed months", Tags: []string{"billing"}},
		func(ctx context.Context, _ *struct{}) (*struct{ Body List[billing.Period] }, error) {
			ps, err := bl.Periods(ctx)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[billing.Period] }{List[billing.Period]{Items: nonNil(ps)}}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "get-seller", Method: http.MethodGet, Path: "/v1/billing/seller", Summary: "Show the seller", Tags: []string{"billing"}},
		func(ctx context.Context, _ *struct{}) (*struct{ Body billing.Seller }, error) {
			sl, err := bl.Seller(ctx)
			return &struct{ Body billing.Seller }{sl}, err
		})

	register(s, opAdmin, huma.Operation{OperationID: "set-seller", Method: http.MethodPut, Path: "/v1/billing/seller", Summary: "Set the seller",
		Description: "The name, address and tax id invoices carry, the number prefixes, payment terms, and when months close automatically.", Tags: []string{"billing"}},
		func(ctx context.Context, in *struct{ Body billing.Seller }) (*struct{ Body billing.Seller }, error) {
			sl, err := bl.SetSeller(ctx, in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = "seller"
			return &struct{ Body billing.Seller }{sl}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "get-billing-profile", Method: http.MethodGet, Path: "/v1/tenants/{tenant}/billing", Summary: "Show a tenant's billing profile", Tags: []string{"billing"}},
		func(ctx context.Context, in *struct {
			Tenant string `path:"tenant"`
		}) (*struct{ Body billing.Profile }, error) {
			pr, err := bl.Profile(ctx, principal(ctx), in.Tenant)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body billing.Profile }{pr}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "set-billing-profile", Method: http.MethodPut, Path: "/v1/tenants/{tenant}/billing", Summary: "Set a tenant's billing profile",
		Description: "Legal name, address, tax id and the tax rate (percent) charged on its invoices.", Tags: []string{"billing"}},
		func(ctx context.Context, in *struct {
			Tenant string `path:"tenant"`
			Body   billing.Profile
		}) (*struct{ Body billing.Profile }, error) {
			pr, err := bl.SetProfile(ctx, principal(ctx), in.Tenant, in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object, info(ctx).Tenant = pr.TenantID, pr.TenantID
			return &struct{ Body billing.Profile }{pr}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "show-credits", Method: http.MethodGet, Path: "/v1/credits", Summary: "Show SLA credits",
		Description: "Each committed reservation's availability in a month, per GPU-minute, from the control plane's own health data (failed nodes until their replacement is ready, shortfalls, nodes degraded by a condition the contract names, confirmed tenant reports), the tier reached and the credit earned, with the down intervals and their evidence. No claim is needed: credits appear on the month's invoice. A tenant sees only its own.",
		Tags:        []string{"billing"}},
		func(ctx context.Context, in *struct {
			Tenant string `query:"tenant" doc:"Tenant name or id (a tenant's own by default)."`
			Period string `query:"period" required:"true" doc:"A month, e.g. 2027-01."`
		}) (*struct{ Body List[billing.Credit] }, error) {
			cs, err := bl.Credits(ctx, principal(ctx), in.Tenant, in.Period)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body List[billing.Credit] }{List[billing.Credit]{Items: cs}}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "explain-invoice-line", Method: http.MethodGet, Path: "/v1/invoices/{invoice}/lines/{line}/sources", Summary: "Explain an invoice line",
		Description: "What a line rests on: the usage records (allocations, GPU-seconds, energy and its source) behind a usage, energy or adjustment line and what they sum to; the reservations behind a commitment; the availability and down intervals with their evidence behind an SLA credit.",
		Tags:        []string{"billing"}},
		func(ctx context.Context, in *struct {
			Invoice string `path:"invoice"`
			Line    int    `path:"line" minimum:"1"`
		}) (*struct{ Body billing.LineSources }, error) {
			src, err := bl.Sources(ctx, principal(ctx), in.Invoice, in.Line)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body billing.LineSources }{src}, nil
		})
}
