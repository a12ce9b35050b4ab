package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// The tenant portal, under /my: a tenant's reservations and nodes,
// availability and credits, usage, invoices, energy and emissions, quotes,
// events and tokens. Every read and action goes through /v1 with the
// tenant's own token, so the portal can show nothing the API would not:
// another tenant's object answers 404 there and here alike.

// tenantOnly serves a page to tenant tokens only: operators and the
// signed-out get 404.
func (c *Console) tenantOnly(h handler) http.HandlerFunc {
	return c.only(neocloud.Role.Tenant, "portal", h)
}

func (c *Console) routeTenant() {
	c.mux.HandleFunc("GET /my", c.tenantOnly(func(w http.ResponseWriter, r *http.Request, _ session) {
		http.Redirect(w, r, "/my/reservations", http.StatusSeeOther)
	}))
	c.mux.HandleFunc("GET /my/reservations", c.tenantOnly(c.myReservations))
	c.mux.HandleFunc("GET /my/reservations/{id}", c.tenantOnly(c.myReservation))
	c.mux.HandleFunc("GET /my/reservations/{id}/topology", c.tenantOnly(c.myTopology))
	c.mux.HandleFunc("GET /my/nodes/{node}", c.tenantOnly(c.myNode))
	c.mux.HandleFunc("POST /my/nodes/{node}/{action}", c.tenantOnly(c.myNodeAction))
	c.mux.HandleFunc("GET /my/availability", c.tenantOnly(c.myAvailability))
	c.mux.HandleFunc("GET /my/usage", c.tenantOnly(c.myUsage))
	c.mux.HandleFunc("GET /my/usage.json", c.tenantOnly(c.myUsageSeries))
	c.mux.HandleFunc("GET /my/invoices", c.tenantOnly(c.myInvoices))
	c.mux.HandleFunc("GET /my/invoices/{id}", c.tenantOnly(c.myInvoice))
	c.mux.HandleFunc("GET /my/invoices/{id}/export", c.tenantOnly(c.myInvoiceExport))
	c.mux.HandleFunc("GET /my/invoices/{id}/lines/{n}", c.tenantOnly(c.myInvoiceLine))
	c.mux.HandleFunc("GET /my/emissions", c.tenantOnly(c.myEmissions))
	c.mux.HandleFunc("GET /my/emissions/export", c.tenantOnly(c.myEmissionsExport))
	c.mux.HandleFunc("GET /my/quote", c.tenantOnly(c.myQuoteForm))
	c.mux.HandleFunc("POST /my/quote", c.tenantOnly(c.myQuote))
	c.mux.HandleFunc("POST /my/reserve", c.tenantOnly(c.myReserve))
	c.mux.HandleFunc("GET /my/events", c.tenantOnly(c.myEvents))
	c.mux.HandleFunc("GET /my/break-fix", c.tenantOnly(c.myBreakFix))
	c.mux.HandleFunc("GET /my/tokens", c.tenantOnly(c.myTokens))
	c.mux.HandleFunc("POST /my/tokens", c.tenantOnly(c.myCreateToken))
	c.mux.HandleFunc("POST /my/tokens/{id}/revoke", c.tenantOnly(c.myRevokeToken))
}

// apiError is a /v1 answer other than success: its status, and the field
// and message of its problem.
type apiError struct {
	Status  int
	Field   string
	Message string
}

func (e *apiError) Error() string { return e.Message }

// asAPI is err as an API answer (any other error: a 500).
func asAPI(err error) *apiError {
	if e, ok := err.(*apiError); ok {
		return e
	}
	return &apiError{Status: http.StatusInternalServerError, Message: err.Error()}
}

// call runs a /v1 request in-process with the session's token.
func (c *Console) call(r *http.Request, s session, method, path string, body any) (*httptest.ResponseRecorder, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequestWithContext(r.Context(), method, path, rd)
	req.Header.Set("Authorization", "Bearer "+s.secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.RemoteAddr = r.RemoteAddr
	rec := httptest.NewRecorder()
	c.cfg.API.ServeHTTP(rec, req)
	if rec.Code >= 300 {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
			Errors []struct {
				Location string `json:"location"`
				Message  string `json:"message"`
			} `json:"errors"`
		}
		json.Unmarshal(rec.Body.Bytes(), &p)
		e := &apiError{Status: rec.Code, Message: p.Detail}
		if e.Message == "" {
			e.Message = p.Title
		}
		if len(p.Errors) > 0 {
			e.Field, e.Message = p.Errors[0].Location, p.Errors[0].Message
		}
		return rec, e
	}
	return rec, nil
}

// getJSON reads a /v1 object as the session's token.
func (c *Console) getJSON(r *http.Request, s session, path string, out any) error {
	rec, err := c.call(r, s, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(rec.Body.Bytes(), out)
}

// myFail answers an API error with its own status (404 stays 404).
func (c *Console) myFail(w http.ResponseWriter, r *http.Request, err error) {
	if e, ok := err.(*apiError); ok {
		http.Error(w, e.Message, e.Status)
		return
	}
	c.fail(w, r, err)
}

// period is the query's period, this month by default.
func (c *Console) period(r *http.Request) string {
	if p := r.URL.Query().Get("period"); p != "" {
		return p
	}
	return c.cfg.Now().UTC().Format("2006-01")
}

func (c *Console) myReservations(w http.ResponseWriter, r *http.Request, s session) {
	var l struct{ Items []sales.Reservation }
	if err := c.getJSON(r, s, "/v1/reservations?limit=200", &l); err != nil {
		c.myFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "my-reservations", "my-reservations", "Reservations", s, l.Items)
}

// mySlot is one node of a reservation as the portal shows it.
type mySlot struct {
	sales.Allocation
	Domain string
	Levels []string
	Parts  []string
}

func (c *Console) myReservation(w http.ResponseWriter, r *http.Request, s session) {
	id := url.PathEscape(r.PathValue("id"))
	var res sales.Reservation
	if err := c.getJSON(r, s, "/v1/reservations/"+id, &res); err != nil {
		c.myFail(w, r, err)
		return
	}
	var al struct{ Items []sales.Allocation }
	if err := c.getJSON(r, s, "/v1/reservations/"+id+"/allocations", &al); err != nil {
		c.myFail(w, r, err)
		return
	}
	site, _ := c.cfg.Fleet.Snapshot.Site(res.Shape.Site)
	var slots []mySlot
	ready, live := 0, 0
	for _, a := range al.Items {
		sl := mySlot{Allocation: a}
		if n, ok := c.cfg.Fleet.Snapshot.Node(a.NodeID); ok {
			sl.Domain, sl.Parts = n.Domain, strings.Split(n.Domain, "/")
		}
		sl.Levels = site.Levels
		slots = append(slots, sl)
		if a.State != sales.AllocationEnded {
			live++
			if a.State == sales.AllocationReady {
				ready++
			}
		}
	}
	var ev struct{ Items []sales.Event }
	if err := c.getJSON(r, s, "/v1/events?limit=500", &ev); err != nil {
		c.myFail(w, r, err)
		return
	}
	var mine []sales.Event
	for _, e := range ev.Items {
		if e.Subject == res.ID {
			mine = append(mine, e)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].Seq > mine[j].Seq })
	c.render(w, r, http.StatusOK, "my-reservation", "my-reservations", "Reservation "+res.ID, s, struct {
		R           sales.Reservation
		Slots       []mySlot
		Levels      []string
		Ready, Live int
		Events      []sales.Event
		Waiting     []waitingReplacement
	}{res, slots, site.Levels, ready, live, mine, waitingReplacements(res)})
}

func (c *Console) myTopology(w http.ResponseWriter, r *http.Request, s session) {
	format := r.URL.Query().Get("format")
	rec, err := c.call(r, s, http.MethodGet, "/v1/reservations/"+url.PathEscape(r.PathValue("id"))+"/topology?format="+url.QueryEscape(format), nil)
	if err != nil {
		c.myFail(w, r, err)
		return
	}
	name := "topology.conf"
	if format == "k8s" {
		name = "labels.sh"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Write(rec.Body.Bytes())
}

// breakFix are the actions a tenant-admin may take on its own node.
var breakFix = []struct{ Path, Label, Confirm string }{
	{"report", "Report a problem", "I confirm that this node is broken as described."},
	{"reboot", "Reboot", "I confirm: reboot this node now (its work stops)."},
	{"gpu-reset", "Reset GPUs", "I confirm: reset this node's GPUs now (their work stops)."},
	{"replace", "Request a replacement", "I confirm: take this node out of my reservation and give me another."},
}

func (c *Console) myNode(w http.ResponseWriter, r *http.Request, s session) {
	ref := r.PathValue("node")
	st, err := c.nodeState(r, s, ref)
	if err != nil {
		c.myFail(w, r, err)
		return
	}
	c.renderNode(w, r, s, http.StatusOK, ref, st, "", "")
}

// nodeState is a node's last report as the tenant may see it: a node that
// does not serve the tenant is not found; one whose agent has not
// reported yet has an empty state.
func (c *Console) nodeState(r *http.Request, s session, ref string) (agents.State, error) {
	var st agents.State
	n, err := c.cfg.Fleet.Node(r.Context(), ref)
	if neocloud.ErrorKind(err) == neocloud.KindNotFound {
		return st, &apiError{Status: http.StatusNotFound, Message: "node " + ref + " not found"}
	} else if err != nil {
		return st, err
	}
	mine, err := c.cfg.Sales.ServesTenant(r.Context(), n.ID, s.P.TenantID)
	if err != nil {
		return st, err
	}
	if !mine {
		c.denied(r, s.P, "portal-node", http.StatusNotFound)
		return st, &apiError{Status: http.StatusNotFound, Message: "node " + ref + " not found"}
	}
	if err := c.getJSON(r, s, "/v1/nodes/"+url.PathEscape(n.ID)+"/agent", &st); err != nil {
		if e, ok := err.(*apiError); !ok || e.Status != http.StatusNotFound {
			return st, err
		}
	}
	return st, nil
}

func (c *Console) renderNode(w http.ResponseWriter, r *http.Request, s session, status int, ref string, st agents.State, msg, errMsg string) {
	n, _ := c.cfg.Fleet.Snapshot.Node(ref)
	data := struct {
		Node     fleet.Node
		State    agents.State
		Actions  any
		Admin    bool
		Message  string
		Error    string
		Fragment bool
		Reports  []sales.BreakFix // the tenant's reports of the node
	}{n, st, breakFix, s.P.Role == neocloud.RoleTenantAdmin, msg, errMsg, r.URL.Query().Get("fragment") == "1", nil}
	if data.Fragment {
		c.fragment(w, r, "my-node", "my-node-live", data)
		return
	}
	var reports struct{ Items []sales.BreakFix }
	if err := c.getJSON(r, s, "/v1/break-fix?kind=report&node="+url.QueryEscape(n.ID), &reports); err != nil {
		c.myFail(w, r, err)
		return
	}
	data.Reports = reports.Items
	c.render(w, r, status, "my-node", "my-reservations", "Node "+n.Hostname, s, data)
}

func (c *Console) myNodeAction(w http.ResponseWriter, r *http.Request, s session) {
	ref, action := r.PathValue("node"), r.PathValue("action")
	known := false
	for _, a := range breakFix {
		known = known || a.Path == action
	}
	if !known {
		http.NotFound(w, r)
		return
	}
	st, err := c.nodeState(r, s, ref)
	if err != nil {
		c.myFail(w, r, err) // not the tenant's node: 404, before anything else
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		c.renderNode(w, r, s, http.StatusUnprocessableEntity, ref, st, "", "Tick the confirmation to "+strings.ReplaceAll(action, "-", " ")+".")
		return
	}
	var bf sales.BreakFix
	rec, err := c.call(r, s, http.MethodPost, "/v1/nodes/"+url.PathEscape(ref)+"/"+action, sales.BreakFixInput{Reason: r.PostFormValue("reason")})
	if err != nil {
		e := asAPI(err)
		if e.Status == http.StatusNotFound {
			http.NotFound(w, r)
			return
		}
		c.renderNode(w, r, s, e.Status, ref, st, "", e.Message)
		return
	}
	json.Unmarshal(rec.Body.Bytes(), &bf)
	c.renderNode(w, r, s, http.StatusCreated, ref, st, fmt.Sprintf("%s recorded (%s).", strings.ReplaceAll(action, "-", " "), bf.ID), "")
}

func (c *Console) myAvailability(w http.ResponseWriter, r *http.Request, s session) {
	period := c.period(r)
	var l struct{ Items []billing.Credit }
	err := c.getJSON(r, s, "/v1/credits?period="+url.QueryEscape(period), &l)
	if e, ok := err.(*apiError); ok && e.Status < 500 && e.Status != http.StatusNotFound {
		c.render(w, r, e.Status, "my-availability", "my-availability", "Availability and credits", s, struct {
			Period  string
			Credits []billing.Credit
			Error   string
		}{period, nil, e.Message})
		return
	} else if err != nil {
		c.myFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "my-availability", "my-availability", "Availability and credits", s, struct {
		Period  string
		Credits []billing.Credit
		Error   string
	}{period, l.Items, ""})
}

func (c *Console) myUsage(w http.ResponseWriter, r *http.Request, s session) {
	period := c.period(r)
	var l struct{ Items []billing.UsageRow }
	if err := c.getJSON(r, s, "/v1/usage?by=reservation&period="+url.QueryEscape(period), &l); err != nil {
		c.myFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "my-usage", "my-usage", "Usage", s, struct {
		Period string
		Rows   []billing.UsageRow
	}{period, l.Items})
}

// myUsageSeries is the usage chart's data: GPU-hours and energy by day.
func (c *Console) myUsageSeries(w http.ResponseWriter, r *http.Request, s session) {
	var l struct{ Items []billing.UsageRow }
	if err := c.getJSON(r, s, "/v1/usage?by=day&period="+url.QueryEscape(c.period(r)), &l); err != nil {
		c.myFail(w, r, err)
		return
	}
	out := map[string][]float64{"t": {}, "gpu_hours": {}, "energy_kwh": {}}
	for _, u := range l.Items {
		d, err := time.Parse("2006-01-02", u.Key)
		if err != nil {
			continue
		}
		kwh, _ := strconv.ParseFloat(u.EnergyKWh, 64)
		out["t"] = append(out["t"], float64(d.Unix()))
		out["gpu_hours"] = append(out["gpu_hours"], float64(u.GPUSeconds)/3600)
		out["energy_kwh"] = append(out["energy_kwh"], kwh)
	}
	writeJSON(w, out)
}

func (c *Console) myInvoices(w http.ResponseWriter, r *http.Request, s session) {
	var l struct{ Items []billing.Invoice }
	if err := c.getJSON(r, s, "/v1/invoices?limit=200", &l); err != nil {
		c.myFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "my-invoices", "my-invoices", "Invoices", s, l.Items)
}

func (c *Console) myInvoice(w http.ResponseWriter, r *http.Request, s session) {
	var inv billing.Invoice
	if err := c.getJSON(r, s, "/v1/invoices/"+url.PathEscape(r.PathValue("id")), &inv); err != nil {
		c.myFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "my-invoice", "my-invoices", "Invoice "+inv.Number, s, inv)
}

// download proxies a /v1 export as an attachment.
func (c *Console) download(w http.ResponseWriter, r *http.Request, s session, path string) {
	rec, err := c.call(r, s, http.MethodGet, path, nil)
	if err != nil {
		c.myFail(w, r, err)
		return
	}
	for _, h := range []string{"Content-Type", "Content-Disposition"} {
		w.Header().Set(h, rec.Header().Get(h))
	}
	w.Write(rec.Body.Bytes())
}

func (c *Console) myInvoiceExport(w http.ResponseWriter, r *http.Request, s session) {
	c.download(w, r, s, "/v1/invoices/"+url.PathEscape(r.PathValue("id"))+"/export?format="+url.QueryEscape(r.URL.Query().Get("format")))
}

func (c *Console) myInvoiceLine(w http.ResponseWriter, r *http.Request, s session) {
	var src billing.LineSources
	if err := c.getJSON(r, s, "/v1/invoices/"+url.PathEscape(r.PathValue("id"))+"/lines/"+url.PathEscape(r.PathValue("n"))+"/sources", &src); err != nil {
		c.myFail(w, r, err)
		return
	}
	c.renderLine(w, r, s, src, "/my", "my-invoices")
}

func (c *Console) myEmissions(w http.ResponseWriter, r *http.Request, s session) {
	period := c.period(r)
	var rep power.Report
	if err := c.getJSON(r, s, "/v1/emissions?period="+url.QueryEscape(period), &rep); err != nil {
		if e, ok := err.(*apiError); ok && e.Status == http.StatusUnprocessableEntity {
			c.render(w, r, e.Status, "my-emissions", "my-emissions", "Energy and emissions", s, struct {
				Period string
				R      *power.Report
				Error  string
			}{period, nil, e.Message})
			return
		}
		c.myFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "my-emissions", "my-emissions", "Energy and emissions", s, struct {
		Period string
		R      *power.Report
		Error  string
	}{period, &rep, ""})
}

func (c *Console) myEmissionsExport(w http.ResponseWriter, r *http.Request, s session) {
	q := r.URL.Query()
	c.download(w, r, s, "/v1/emissions/export?period="+url.QueryEscape(q.Get("period"))+"&format="+url.QueryEscape(q.Get("format")))
}

// quoteForm is the quote form's state: what was asked, the offer, and
// the error of each field.
type quoteForm struct {
	SKUs   []fleet.SKU
	Levels []string
	In     map[string]string
	Quote  *sales.Quote
	Errors map[string]string
	Error  string
}

func (c *Console) myQuoteForm(w http.ResponseWriter, r *http.Request, s session) {
	f, err := c.newQuoteForm(r, s)
	if err != nil {
		c.myFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "my-quote", "my-quote", "Request a quote", s, f)
}

func (c *Console) newQuoteForm(r *http.Request, s session) (quoteForm, error) {
	f := quoteForm{In: map[string]string{"gpus": "8", "class": "reserved", "duration": "7d", "start": c.cfg.Now().UTC().Add(24 * time.Hour).Truncate(time.Hour).Format("2006-01-02T15:04")},
		Errors: map[string]string{}}
	var l struct{ Items []fleet.SKU }
	if err := c.getJSON(r, s, "/v1/skus", &l); err != nil {
		return f, err
	}
	// Only what some site has nodes of is for sale.
	sold := map[string]bool{}
	c.cfg.Fleet.Snapshot.Each(fleet.NodeFilter{}, func(n *fleet.Node) { sold[n.SKU] = true })
	for _, k := range l.Items {
		if sold[k.Name] {
			f.SKUs = append(f.SKUs, k)
		}
	}
	if len(f.SKUs) > 0 {
		f.In["sku"] = f.SKUs[0].Name
	}
	levels := map[string]bool{}
	for _, st := range c.cfg.Fleet.Snapshot.Sites() {
		for _, lv := range st.Levels {
			if !levels[lv] {
				levels[lv] = true
				f.Levels = append(f.Levels, lv)
			}
		}
	}
	return f, nil
}

func (c *Console) myQuote(w http.ResponseWriter, r *http.Request, s session) {
	f, err := c.newQuoteForm(r, s)
	if err != nil {
		c.myFail(w, r, err)
		return
	}
	for _, k := range []string{"sku", "gpus", "class", "start", "duration", "within", "hold"} {
		f.In[k] = strings.TrimSpace(r.PostFormValue(k))
	}
	in := sales.QuoteInput{ShapeInput: sales.ShapeInput{SKU: f.In["sku"], Class: sales.Class(f.In["class"]), Within: f.In["within"]}, Hold: f.In["hold"] == "yes"}
	if n, err := strconv.Atoi(f.In["gpus"]); err != nil || n <= 0 {
		f.Errors["gpus"] = "a whole number of GPUs, such as 8"
	} else {
		in.GPUs = n
	}
	if f.In["class"] == "reserved" {
		if t, err := time.Parse("2006-01-02T15:04", f.In["start"]); err != nil {
			f.Errors["start"] = "a date and time (UTC), such as 2027-01-04T00:00"
		} else {
			in.Start = &t
		}
		if d, err := neocloud.ParseDuration(f.In["duration"]); err != nil || d <= 0 {
			f.Errors["duration"] = "a duration such as 12h, 7d or 30d"
		} else {
			in.DurationS = int64(d / time.Second)
		}
	}
	if len(f.Errors) > 0 {
		c.render(w, r, http.StatusUnprocessableEntity, "my-quote", "my-quote", "Request a quote", s, f)
		return
	}
	rec, err := c.call(r, s, http.MethodPost, "/v1/quotes", in)
	if err != nil {
		e := asAPI(err)
		field := strings.TrimPrefix(e.Field, "body.")
		switch field {
		case "duration_s":
			field = "duration"
		case "":
			f.Error = e.Message
		}
		if field != "" {
			f.Errors[field] = e.Message
			if _, shown := map[string]bool{"sku": true, "gpus": true, "class": true, "start": true, "duration": true, "within": true}[field]; !shown {
				f.Error = e.Message
			}
		}
		c.render(w, r, e.Status, "my-quote", "my-quote", "Request a quote", s, f)
		return
	}
	var q sales.Quote
	json.Unmarshal(rec.Body.Bytes(), &q)
	f.Quote = &q
	c.render(w, r, http.StatusOK, "my-quote", "my-quote", "Your quote", s, f)
}

func (c *Console) myReserve(w http.ResponseWriter, r *http.Request, s session) {
	rec, err := c.call(r, s, http.MethodPost, "/v1/reservations", sales.ReserveInput{Quote: r.PostFormValue("quote")})
	if e, ok := err.(*apiError); ok && e.Status == http.StatusConflict {
		// The quote ran out, was used, or its capacity went: the form
		// again, saying so, to ask for a new one.
		f, ferr := c.newQuoteForm(r, s)
		if ferr != nil {
			c.myFail(w, r, ferr)
			return
		}
		f.Error = e.Message + ". Ask for a new quote."
		c.render(w, r, e.Status, "my-quote", "my-quote", "Request a quote", s, f)
		return
	}
	if err != nil {
		c.myFail(w, r, err)
		return
	}
	var res sales.Reservation
	json.Unmarshal(rec.Body.Bytes(), &res)
	http.Redirect(w, r, "/my/reservations/"+url.PathEscape(res.ID), http.StatusSeeOther)
}

func (c *Console) myEvents(w http.ResponseWriter, r *http.Request, s session) {
	var l struct{ Items []sales.Event }
	if err := c.getJSON(r, s, "/v1/events?limit=500", &l); err != nil {
		c.myFail(w, r, err)
		return
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Seq > l.Items[j].Seq })
	if len(l.Items) > 100 {
		l.Items = l.Items[:100]
	}
	if r.URL.Query().Get("fragment") == "1" {
		c.fragment(w, r, "my-events", "my-events-list", l.Items)
		return
	}
	c.render(w, r, http.StatusOK, "my-events", "my-events", "Events", s, l.Items)
}

// myBreakFix lists the tenant's break-fix requests, newest first: its
// reports (open, confirmed, or declined and why), reboots, GPU resets and
// replacements, on nodes it holds or has held.
func (c *Console) myBreakFix(w http.ResponseWriter, r *http.Request, s session) {
	var l struct{ Items []sales.BreakFix }
	if err := c.getJSON(r, s, "/v1/break-fix?limit=1000", &l); err != nil {
		c.myFail(w, r, err)
		return
	}
	slices.Reverse(l.Items)
	c.render(w, r, http.StatusOK, "my-break-fix", "my-break-fix", "Break-fix", s, l.Items)
}

func (c *Console) myTokens(w http.ResponseWriter, r *http.Request, s session) {
	c.renderTokens(w, r, s, http.StatusOK, "", "")
}

func (c *Console) renderTokens(w http.ResponseWriter, r *http.Request, s session, status int, secret, errMsg string) {
	var l struct{ Items []tenant.Token }
	if err := c.getJSON(r, s, "/v1/tokens?limit=200", &l); err != nil {
		c.myFail(w, r, err)
		return
	}
	c.render(w, r, status, "my-tokens", "my-tokens", "Tokens and members", s, struct {
		Tokens []tenant.Token
		Admin  bool
		Secret string
		Error  string
		Self   string
	}{l.Items, s.P.Role == neocloud.RoleTenantAdmin, secret, errMsg, s.P.TokenID})
}

func (c *Console) myCreateToken(w http.ResponseWriter, r *http.Request, s session) {
	in := tenant.CreateTokenInput{Name: strings.TrimSpace(r.PostFormValue("name")), Role: neocloud.Role(r.PostFormValue("role"))}
	rec, err := c.call(r, s, http.MethodPost, "/v1/tokens", in)
	if err != nil {
		e := asAPI(err)
		c.renderTokens(w, r, s, e.Status, "", e.Message)
		return
	}
	var out struct {
		Secret string `json:"secret"`
	}
	json.Unmarshal(rec.Body.Bytes(), &out)
	c.renderTokens(w, r, s, http.StatusCreated, out.Secret, "")
}

func (c *Console) myRevokeToken(w http.ResponseWriter, r *http.Request, s session) {
	if _, err := c.call(r, s, http.MethodDelete, "/v1/tokens/"+url.PathEscape(r.PathValue("id")), nil); err != nil {
		e := asAPI(err)
		if e.Status == http.StatusNotFound {
			http.NotFound(w, r)
			return
		}
		c.renderTokens(w, r, s, e.Status, "", e.Message)
		return
	}
	http.Redirect(w, r, "/my/tokens", http.StatusSeeOther)
}
