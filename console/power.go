package console

import (
	"context"
	"net/http"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/power"
)

// powerPage shows each site's firm capacity, load and headroom by power
// domain, this month's energy and emissions by party, the air permit, and
// a chart of the site's hourly load and how it was served.
func (c *Console) powerPage(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	type siteView struct {
		Power  power.SitePower
		Report power.Report
		Names  map[string]string
	}
	var views []siteView
	period := c.cfg.Now().UTC().Format("2006-01")
	names := c.tenantNames(ctx)
	names[power.Operator], names[power.Unallocated] = "operator", "unallocated"
	for _, st := range c.cfg.Fleet.Snapshot.Sites() {
		sp, err := c.cfg.Power.SitePower(ctx, st.ID, c.powerLoad())
		if err != nil {
			c.fail(w, r, err)
			return
		}
		rep, err := c.cfg.Power.Report(ctx, operatorP, st.ID, "", period)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		rep.Hours = nil
		views = append(views, siteView{sp, rep, names})
	}
	c.render(w, r, http.StatusOK, "power", "power", "Power and environment", s, struct {
		Sites  []siteView
		Period string
	}{views, period})
}

func (c *Console) powerLoad() func(ctx context.Context, siteID string) (map[string]power.NodeLoad, error) {
	if c.cfg.PowerLoad != nil {
		return c.cfg.PowerLoad
	}
	return func(context.Context, string) (map[string]power.NodeLoad, error) { return nil, nil }
}

// powerSeries is the chart's data: a site's hourly IT and facility load
// and the grid, generation and unserved parts, in kW, over the last week.
func (c *Console) powerSeries(w http.ResponseWriter, r *http.Request, _ session) {
	ctx := r.Context()
	site := r.URL.Query().Get("site")
	now := c.cfg.Now().UTC()
	out := map[string][]float64{"t": {}, "it_kw": {}, "facility_kw": {}, "grid_kw": {}, "generation_kw": {}, "unserved_kw": {}}
	// The last week spans at most two months: one report each.
	seen := map[string]bool{}
	for _, t := range []time.Time{now.Add(-7 * 24 * time.Hour), now} {
		period := t.Format("2006-01")
		if seen[period] {
			continue
		}
		seen[period] = true
		rep, err := c.cfg.Power.Report(ctx, operatorP, site, "", period)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, h := range rep.Hours {
			if h.Hour.Before(now.Add(-7 * 24 * time.Hour)) {
				continue
			}
			out["t"] = append(out["t"], float64(h.Hour.Unix()))
			out["it_kw"] = append(out["it_kw"], float64(h.ITWh)/1000)
			out["facility_kw"] = append(out["facility_kw"], float64(h.FacilityWh)/1000)
			out["grid_kw"] = append(out["grid_kw"], float64(h.GridWh)/1000)
			out["generation_kw"] = append(out["generation_kw"], float64(h.GenerationWh)/1000)
			out["unserved_kw"] = append(out["unserved_kw"], float64(h.UnservedWh)/1000)
		}
	}
	writeJSON(w, out)
}

// exportPower downloads a site's report for a period as PDF, CSV or JSON.
func (c *Console) exportPower(w http.ResponseWriter, r *http.Request, _ session) {
	q := r.URL.Query()
	rep, err := c.cfg.Power.Report(r.Context(), operatorP, q.Get("site"), "", q.Get("period"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	format := q.Get("format")
	b, ct, err := power.Export(rep, format)
	if err != nil {
		c.fail(w, r, neocloud.Invalid("query.format", "%v", err))
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", `attachment; filename="emissions-`+rep.SiteName+"-"+rep.Period+"."+format+`"`)
	w.Write(b)
}
