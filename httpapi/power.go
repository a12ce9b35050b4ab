package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/power"
)

func (s *Server) registerPower() {
	pw := s.cfg.Power
	type query struct {
		Site   string `query:"site" doc:"Site name or id (the only site by default)."`
		Tenant string `query:"tenant" doc:"Tenant name or id: that tenant's share (a tenant's own by default; an operator without it gets the site's report)."`
		Period string `query:"period" required:"true" doc:"2027-01, 2027-Q1, 2027-H1 (a semiannual permit report) or 2027."`
	}
	register(s, opReadTenant, huma.Operation{OperationID: "show-emissions", Method: http.MethodGet, Path: "/v1/emissions", Summary: "Show an energy and emissions report",
		Description: "IT and facility energy, water, location-based Scope 2 (hourly grid intensity × hourly energy) and Scope 1 (on-site generation, with its pollutants) " +
			"for a tenant's work at a site, or a whole site by party (tenants, operator, unallocated: they sum to the site to the watt-hour) with " +
			"generation units and the air permit's year to date. Figures from the dispatch model are flagged estimated. A tenant sees only its own share.",
		Tags: []string{"power"}},
		func(ctx context.Context, in *query) (*struct{ Body power.Report }, error) {
			r, err := pw.Report(ctx, principal(ctx), in.Site, in.Tenant, in.Period)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body power.Report }{r}, nil
		})

	register(s, opReadTenant, huma.Operation{OperationID: "export-emissions", Method: http.MethodGet, Path: "/v1/emissions/export", Summary: "Export an energy and emissions report",
		Description: "The report as JSON, CSV (one row per figure, each with its unit) or PDF.", Tags: []string{"power"}},
		func(ctx context.Context, in *struct {
			Site   string `query:"site" doc:"Site name or id (the only site by default)."`
			Tenant string `query:"tenant" doc:"Tenant name or id (a tenant's own by default)."`
			Period string `query:"period" required:"true" doc:"2027-01, 2027-Q1, 2027-H1 or 2027."`
			Format string `query:"format" default:"pdf" enum:"json,csv,pdf"`
		}) (*struct {
			ContentType        string `header:"Content-Type"`
			ContentDisposition string `header:"Content-Disposition"`
			Body               []byte
		}, error) {
			r, err := pw.Report(ctx, principal(ctx), in.Site, in.Tenant, in.Period)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			b, ct, err := power.Export(r, in.Format)
			if err != nil {
				return nil, neocloud.Invalid("query.format", "%v", err)
			}
			who := r.SiteName
			if r.TenantName != "" {
				who = r.TenantName + "-" + r.SiteName
			}
			name := strings.NewReplacer("/", "-", "\"", "").Replace("emissions-"+who+"-"+r.Period) + "." + in.Format
			return &struct {
				ContentType        string `header:"Content-Type"`
				ContentDisposition string `header:"Content-Disposition"`
				Body               []byte
			}{ct, `attachment; filename="` + name + `"`, b}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "show-site-power", Method: http.MethodGet, Path: "/v1/sites/{site}/power", Summary: "Show a site's power",
		Description: "Firm capacity (grid plus on-site generation within the permit), committed planning load × PUE, the nodes' measured draw and the headroom, for the site and each power domain (feed, hall, busway).",
		Tags:        []string{"power"}},
		func(ctx context.Context, in *struct {
			Site string `path:"site" doc:"Site name or id."`
		}) (*struct{ Body power.SitePower }, error) {
			load := s.cfg.PowerLoad
			if load == nil {
				load = func(context.Context, string) (map[string]power.NodeLoad, error) { return nil, nil }
			}
			sp, err := pw.SitePower(ctx, in.Site, load)
			if err != nil {
				return nil, err
			}
			return &struct{ Body power.SitePower }{sp}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "put-feed-readings", Method: http.MethodPost, Path: "/v1/sites/{site}/power/feed-readings", Summary: "Report supply-meter readings",
		Description: "Hours of energy through the site's supply meters (grid feeds and generation units, as the utility or plant reports them). A reading of an hour " +
			"already reported replaces it. Site reports set them against the facility energy accounted for those hours; the difference is the unallocated line. " +
			"All readings are checked before any is stored.",
		Tags: []string{"power"}},
		func(ctx context.Context, in *struct {
			Site string `path:"site" doc:"Site name or id."`
			Body power.FeedReadingsInput
		}) (*struct {
			Body struct {
				Stored int `json:"stored"`
			}
		}, error) {
			n, err := pw.PutFeedReadings(ctx, in.Site, in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = in.Site
			out := &struct {
				Body struct {
					Stored int `json:"stored"`
				}
			}{}
			out.Body.Stored = n
			return out, nil
		})

	if s.cfg.Shedder == nil {
		return
	}
	register(s, opAdmin, huma.Operation{OperationID: "shed-load", Method: http.MethodPost, Path: "/v1/sites/{site}/power/events", Summary: "Report a power event and shed load",
		Description: "A generation unit tripped, a grid feed dropped, or an emergency cap: the firm capacity after it, the site's facility load now and, beyond it, " +
			"load shed in class order (internal, spot, on-demand, then committed work only down to its contract's floor) first by per-GPU power caps through the " +
			"nodes' agents, then by preempting internal, then spot, reservations. The plan, with the watts each action saves, is recorded.",
		Tags: []string{"power"}},
		func(ctx context.Context, in *struct {
			Site string `path:"site" doc:"Site name or id."`
			Body power.ShedInput
		}) (*struct{ Body power.ShedPlan }, error) {
			plan, err := pw.Shed(ctx, in.Site, in.Body, *s.cfg.Shedder)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = plan.SiteID
			return &struct{ Body power.ShedPlan }{plan}, nil
		})
}
