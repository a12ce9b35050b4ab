package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud/finance"
)

func (s *Server) registerFinance() {
	fs := s.cfg.Finance
	type query struct {
		Site   string `query:"site" doc:"Site name or id (the only site by default)."`
		Period string `query:"period" required:"true" doc:"2027-01, 2027-Q1, 2027-H1 or 2027; a running period ends now."`
	}
	type moneyQuery struct {
		Site     string `query:"site" doc:"Site name or id (the only site by default)."`
		Period   string `query:"period" required:"true" doc:"2027-01, 2027-Q1, 2027-H1 or 2027; a running period ends now."`
		Currency string `query:"currency" doc:"ISO 4217 (default USD)."`
	}
	tags := []string{"finance"}
	register(s, opRead, huma.Operation{OperationID: "finance-summary", Method: http.MethodGet, Path: "/v1/finance/summary", Summary: "Show a site's finance summary",
		Description: "Utilization, recognized and invoiced revenue with deferred and unbilled balances, backlog, concentration, cost and margin for a period.", Tags: tags},
		func(ctx context.Context, in *query) (*struct{ Body finance.Summary }, error) {
			return body(fs.Summary(ctx, in.Site, in.Period))
		})
	register(s, opRead, huma.Operation{OperationID: "finance-utilization", Method: http.MethodGet, Path: "/v1/finance/utilization", Summary: "Show a site's utilization",
		Description: "GPU-hours by category with one precedence (down > maintenance > external tenants by class > internal > spare > idle), so that the categories " +
			"sum to the fleet every hour; with the hourly series.", Tags: tags},
		func(ctx context.Context, in *query) (*struct{ Body finance.Utilization }, error) {
			return body(fs.Utilization(ctx, in.Site, in.Period))
		})
	register(s, opRead, huma.Operation{OperationID: "finance-revenue", Method: http.MethodGet, Path: "/v1/finance/revenue", Summary: "Show a site's revenue",
		Description: "Revenue recognized by service period (committed charges evenly over their service month, usage as delivered, SLA credits in the month of " +
			"the service), invoiced revenue, and deferred and unbilled balances, with recognized + Δdeferred − Δunbilled = invoiced; by tenant, class and kind, " +
			"with the realized price per GPU-hour of each class.", Tags: tags},
		func(ctx context.Context, in *moneyQuery) (*struct{ Body finance.Revenue }, error) {
			return body(fs.Revenue(ctx, in.Site, in.Period, in.Currency))
		})
	register(s, opRead, huma.Operation{OperationID: "finance-backlog", Method: http.MethodGet, Path: "/v1/finance/backlog", Summary: "Show a site's backlog",
		Description: "Remaining performance obligations of signed committed contracts at the period's end, by year, with the take-or-pay share, customer " +
			"concentration and the weighted average remaining contract length.", Tags: tags},
		func(ctx context.Context, in *moneyQuery) (*struct{ Body finance.Backlog }, error) {
			return body(fs.Backlog(ctx, in.Site, in.Period, in.Currency))
		})
	register(s, opRead, huma.Operation{OperationID: "finance-economics", Method: http.MethodGet, Path: "/v1/finance/economics", Summary: "Show a site's unit economics",
		Description: "Cost per delivered GPU-hour, gross margin, break-even utilization and payback from the site's economics inputs and power model, and " +
			"internal work at its transfer price and at its opportunity cost: rent or train.", Tags: tags},
		func(ctx context.Context, in *query) (*struct{ Body finance.UnitEconomics }, error) {
			return body(fs.Economics(ctx, in.Site, in.Period))
		})
	register(s, opRead, huma.Operation{OperationID: "finance-whatif", Method: http.MethodGet, Path: "/v1/finance/whatif", Summary: "Compare the current mix with leasing the whole site",
		Description: "Revenue, cost, margin, sold share, backlog and the emissions tenants carry over a horizon: the current mix at a baseline period's rates " +
			"against a lease of every non-spare GPU from the earliest start the calendar allows.", Tags: tags},
		func(ctx context.Context, in *struct {
			Site        string `query:"site" doc:"Site name or id (the only site by default)."`
			LeaseTenant string `query:"lease_tenant" required:"true" doc:"The tenant the site would be leased to."`
			Rate        string `query:"rate_per_gpu_hour" required:"true" doc:"e.g. 1.85"`
			DurationS   int64  `query:"duration_s" required:"true" minimum:"1" doc:"The lease's term and the horizon, seconds."`
			Baseline    string `query:"baseline" doc:"The period the current mix is read from (default: last month)."`
		}) (*struct{ Body finance.WhatIf }, error) {
			return body(fs.WhatIf(ctx, finance.WhatIfInput{Site: in.Site, LeaseTenant: in.LeaseTenant, Rate: in.Rate, DurationS: in.DurationS, Baseline: in.Baseline}))
		})
}

// body answers a value, or the error that stopped it.
func body[T any](v T, err error) (*struct{ Body T }, error) {
	if err != nil {
		return nil, err
	}
	return &struct{ Body T }{v}, nil
}
