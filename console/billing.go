package console

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/billing"
)

type draftRow struct {
	Tenant  string
	Invoice billing.Invoice
}

// invoices shows the closed months, every finalized invoice and credit
// note (newest first), the open month's drafts, and a chart of the usage
// metered per hour.
func (c *Console) invoices(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	bl := c.cfg.Billing
	periods, err := bl.Periods(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	sort.Slice(periods, func(i, j int) bool { return periods[i].Period > periods[j].Period })
	invs, err := bl.Invoices(ctx, operatorP, "", billing.InvoiceFilter{}, neocloud.Page{Limit: neocloud.MaxLimit})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	sort.SliceStable(invs, func(i, j int) bool { return invs[i].IssuedAt.After(invs[j].IssuedAt) })
	seller, err := bl.Seller(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	names := c.tenantNames(ctx)
	ids := make([]string, 0, len(names))
	for id := range names {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return names[ids[i]] < names[ids[j]] })
	open := billing.MonthOf(c.cfg.Now())
	var drafts []draftRow
	for _, id := range ids {
		ds, err := bl.Draft(ctx, operatorP, id, open)
		if err != nil && neocloud.ErrorKind(err) != neocloud.KindConflict {
			c.fail(w, r, err)
			return
		}
		for _, d := range ds {
			drafts = append(drafts, draftRow{Tenant: names[id], Invoice: d})
		}
	}
	var closeAt time.Time
	if seller.CloseAfterS >= 0 {
		_, end, _ := billing.Month("", open)
		closeAt = end.Add(time.Duration(seller.CloseAfterS) * time.Second)
	}
	c.render(w, r, http.StatusOK, "invoices", "invoices", "Invoices", s, struct {
		Periods []billing.Period
		Rows    []billing.Invoice
		Drafts  []draftRow
		Open    string
		CloseAt time.Time
		Seller  billing.Seller
	}{periods, invs, drafts, open, closeAt, seller})
}

// usageSeries is the chart's data: GPU-hours metered per hour by class and
// node energy (kWh) over the last week.
func (c *Console) usageSeries(w http.ResponseWriter, r *http.Request, _ session) {
	now := c.cfg.Now().UTC().Truncate(time.Hour)
	from := now.Add(-7 * 24 * time.Hour)
	us, err := c.cfg.Billing.HourlyUsage(r.Context(), from, now.Add(time.Hour))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	idx := map[int64]int{}
	out := map[string][]float64{"t": {}, "energy_kwh": {}}
	for _, k := range classes {
		out[k] = []float64{}
	}
	for _, u := range us {
		t := u.Hour.Unix()
		i, ok := idx[t]
		if !ok {
			i = len(out["t"])
			idx[t] = i
			for k := range out {
				out[k] = append(out[k], 0)
			}
			out["t"][i] = float64(t)
		}
		if _, ok := out[u.Class]; ok {
			out[u.Class][i] += float64(u.GPUSeconds) / 3600
		}
		out["energy_kwh"][i] += float64(u.EnergyJ) / 3.6e6
	}
	writeJSON(w, out)
}

// invoice shows one invoice or credit note with its lines.
func (c *Console) invoice(w http.ResponseWriter, r *http.Request, s session) {
	inv, err := c.cfg.Billing.InvoiceByRef(r.Context(), operatorP, r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "invoice", "invoices", inv.Number, s, inv)
}

// exportInvoice downloads an invoice as PDF, CSV or JSON.
func (c *Console) exportInvoice(w http.ResponseWriter, r *http.Request, _ session) {
	inv, err := c.cfg.Billing.InvoiceByRef(r.Context(), operatorP, r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	format := r.URL.Query().Get("format")
	b, ct, err := billing.Export(inv, format)
	if err != nil {
		c.fail(w, r, neocloud.Invalid("query.format", "%v", err))
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", `attachment; filename="`+inv.Number+"."+format+`"`)
	w.Write(b)
}

// invoiceLine shows what one line of an invoice rests on.
func (c *Console) invoiceLine(w http.ResponseWriter, r *http.Request, s session) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil {
		c.fail(w, r, neocloud.NotFound("line", r.PathValue("n")))
		return
	}
	src, err := c.cfg.Billing.Sources(r.Context(), operatorP, r.PathValue("id"), n)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.renderLine(w, r, s, src, "", "invoices")
}

// lineView is a line's sources as the line page shows them: at most 500
// records (More says how many were left out), links under Base (the
// operator's pages, or the tenant portal's /my), nodes linked for
// operators.
type lineView struct {
	billing.LineSources
	More  int
	Base  string
	Nodes bool
}

func (c *Console) renderLine(w http.ResponseWriter, r *http.Request, s session, src billing.LineSources, base, nav string) {
	v := lineView{LineSources: src, Base: base, Nodes: base == ""}
	if len(v.Records) > 500 {
		v.Records = v.Records[:500]
	}
	v.More = max(v.RecordsTotal, len(src.Records)) - len(v.Records) // the store lists 1,000 of RecordsTotal
	c.render(w, r, http.StatusOK, "line", nav, src.Number+" line "+strconv.Itoa(src.Line.N), s, v)
}
