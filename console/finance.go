package console

import (
	"net/http"

	"github.com/neocloud/neocloud/finance"
)

// financePage shows, per site, this month's utilization, revenue with its
// balances, backlog and unit economics, with charts of hourly utilization
// and of revenue month by month.
func (c *Console) financePage(w http.ResponseWriter, r *http.Request, s session) {
	ctx := finance.WithMemo(r.Context()) // the books read once for the page
	period := c.cfg.Now().UTC().Format("2006-01")
	type siteView struct {
		Summary   finance.Summary
		Revenue   finance.Revenue
		Backlog   finance.Backlog
		Economics finance.UnitEconomics
		Names     map[string]string
	}
	names := c.tenantNames(ctx)
	var views []siteView
	for _, st := range c.cfg.Fleet.Snapshot.Sites() {
		var v siteView
		var err error
		if v.Summary, err = c.cfg.Finance.Summary(ctx, st.ID, period); err == nil {
			if v.Revenue, err = c.cfg.Finance.Revenue(ctx, st.ID, period, v.Summary.Currency); err == nil {
				if v.Backlog, err = c.cfg.Finance.Backlog(ctx, st.ID, period, v.Summary.Currency); err == nil {
					v.Economics, err = c.cfg.Finance.Economics(ctx, st.ID, period)
				}
			}
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		v.Names = names
		views = append(views, v)
	}
	c.render(w, r, http.StatusOK, "finance", "finance", "Finance", s, struct {
		Sites  []siteView
		Period string
	}{views, period})
}

// financeUtilization is the utilization chart's data: GPUs in each
// category, hour by hour, this month.
func (c *Console) financeUtilization(w http.ResponseWriter, r *http.Request, _ session) {
	u, err := c.cfg.Finance.Utilization(r.Context(), r.URL.Query().Get("site"), c.cfg.Now().UTC().Format("2006-01"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	out := map[string][]float64{"t": {}}
	for i, h := range u.Hours {
		out["t"] = append(out["t"], float64(h.Unix()))
		secs := int64(3600)
		if end := h.Add(3600 * 1e9); end.After(u.To) {
			secs = int64(u.To.Sub(h).Seconds())
		}
		for _, cat := range finance.Categories {
			v := 0.0
			if secs > 0 {
				v = float64(u.Series[cat][i]) / float64(secs)
			}
			out[cat] = append(out[cat], v)
		}
	}
	writeJSON(w, out)
}

// financeRevenue is the revenue chart's data: recognized and invoiced
// revenue and the balances at each month's end, the last twelve months.
func (c *Console) financeRevenue(w http.ResponseWriter, r *http.Request, _ session) {
	ms, err := c.cfg.Finance.Monthly(r.Context(), r.URL.Query().Get("site"), "", 12)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	out := map[string][]float64{"t": {}, "recognized": {}, "invoiced": {}, "deferred": {}, "unbilled": {}}
	for _, m := range ms {
		out["t"] = append(out["t"], float64(m.Month.Unix()))
		out["recognized"] = append(out["recognized"], float64(m.Recognized)/1e6)
		out["invoiced"] = append(out["invoiced"], float64(m.Invoiced)/1e6)
		out["deferred"] = append(out["deferred"], float64(m.Deferred)/1e6)
		out["unbilled"] = append(out["unbilled"], float64(m.Unbilled)/1e6)
	}
	writeJSON(w, out)
}
