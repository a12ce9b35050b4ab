package console

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"github.com/neocloud/neocloud/pricing"
	"html/template"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

var funcs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04")
		case *time.Time:
			if v == nil {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04")
		}
		return fmt.Sprint(t)
	},
	"pct": func(a, b int) string {
		if b == 0 {
			return "0.0%"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
	},
	"join":  strings.Join,
	"since": func(a, b time.Time) string { return b.Sub(a).Round(time.Second).String() },
	"dur":   func(s int64) string { return (time.Duration(s) * time.Second).String() },
	// Power: watts as kW, watt-hours as kWh, grams as kg, one decimal.
	"kw":  func(w int64) string { return fmt.Sprintf("%.1f", float64(w)/1000) },
	"kwh": func(wh int64) string { return fmt.Sprintf("%.1f", float64(wh)/1000) },
	"kg":  func(g float64) string { return fmt.Sprintf("%.1f", g/1000) },
	// money formats micro-units (an int64, or a pointer to one).
	"money": func(v any) string {
		switch m := v.(type) {
		case int64:
			return pricing.FormatMicros(m)
		case *int64:
			if m != nil {
				return pricing.FormatMicros(*m)
			}
		}
		return ""
	},
	"list":      func(xs ...string) []string { return xs },
	"hasPrefix": strings.HasPrefix,
}

var operatorP = neocloud.Principal{TokenID: "console", Role: neocloud.RoleOperatorViewer}

// tenantNames maps tenant ids to names.
func (c *Console) tenantNames(ctx context.Context) map[string]string {
	out := map[string]string{}
	pg := neocloud.Page{Limit: 1000}
	for {
		ts, err := c.cfg.Tenants.List(ctx, tenant.TenantFilter{}, pg)
		if err != nil {
			return out
		}
		for _, t := range ts {
			out[t.ID] = t.Name
		}
		if len(ts) < pg.Limit {
			return out
		}
		pg.Cursor = neocloud.EncodeCursor(ts[len(ts)-1].ID)
	}
}

type count struct {
	Name string
	N    int
}

type overviewData struct {
	GPUs, Nodes  int
	Lifecycle    []count
	Health       []count
	Use          []count
	InUse        int
	Reservations []resRow
	Incidents    []agents.Incident
	Replacements []sales.Event
	Sites        []fleet.Site
	OpenReports  int // tenants' reports awaiting an operator
}

type resRow struct {
	Class  string
	States []count
	Total  int
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	uses, err := c.nodeUses(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := overviewData{Sites: c.cfg.Fleet.Snapshot.Sites()}
	life, health, use := map[string]int{}, map[string]int{}, map[string]int{}
	c.cfg.Fleet.Snapshot.Each(fleet.NodeFilter{}, func(n *fleet.Node) {
		g := len(n.GPUs)
		d.Nodes++
		d.GPUs += g
		life[string(n.Lifecycle)] += g
		health[string(n.Health)] += g
		switch u, ok := uses[n.ID]; {
		case ok:
			use[string(u.Class)] += min(g, u.GPUs)
			d.InUse += min(g, u.GPUs)
			if u.GPUs < g {
				use["idle"] += g - u.GPUs
			}
		case down(n) || n.Lifecycle != fleet.LifecycleAvailable:
			use["out of service"] += g
		case n.Spare:
			use["spare"] += g
		default:
			use["idle"] += g
		}
	})
	for _, l := range fleet.Lifecycles {
		d.Lifecycle = append(d.Lifecycle, count{string(l), life[string(l)]})
	}
	for _, h := range []fleet.Health{fleet.HealthOK, fleet.HealthDegraded, fleet.HealthUnreachable, fleet.HealthFailed} {
		d.Health = append(d.Health, count{string(h), health[string(h)]})
	}
	for _, k := range append(slices.Clone(classes), "spare", "idle", "out of service") {
		d.Use = append(d.Use, count{k, use[k]})
	}
	rc, err := c.cfg.Store.ReservationCounts(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	byClass := map[string]*resRow{}
	for _, x := range rc {
		row := byClass[string(x.Class)]
		if row == nil {
			row = &resRow{Class: string(x.Class)}
			byClass[string(x.Class)] = row
		}
		row.States = append(row.States, count{string(x.State), x.Count})
		row.Total += x.Count
	}
	for _, k := range classes {
		if row := byClass[k]; row != nil {
			d.Reservations = append(d.Reservations, *row)
		}
	}
	if d.Incidents, err = c.cfg.Agents.Incidents(ctx, true); err != nil {
		c.fail(w, r, err)
		return
	}
	if d.Replacements, err = c.cfg.Store.RecentEvents(ctx, 8, "node.replaced", "node.replacement_ready", "node.replacement_failed"); err != nil {
		c.fail(w, r, err)
		return
	}
	if d.OpenReports, err = c.cfg.Sales.CountBreakFixes(ctx, s.P, openReports); err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "overview", "overview", "Overview", s, d)
}

func (c *Console) utilization(w http.ResponseWriter, r *http.Request, _ session) {
	pts := c.Series()
	out := map[string][]float64{"t": make([]float64, len(pts)), "down": make([]float64, len(pts)), "used_pct": make([]float64, len(pts))}
	for _, k := range classes {
		out[k] = make([]float64, len(pts))
	}
	for i, p := range pts {
		out["t"][i] = float64(p.At.Unix())
		out["down"][i] = float64(p.Down)
		used := 0
		for _, k := range classes {
			out[k][i] = float64(p.ByClass[k])
			used += p.ByClass[k]
		}
		if p.GPUs > 0 {
			out["used_pct"][i] = 100 * float64(used) / float64(p.GPUs)
		}
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Cell codes of the heatmap, by state.
var stateLegend = []legend{
	{"a", "idle", "#d9dee5"}, {"s", "spare", "#f4f1c9"},
	{"L", "lease", "#1f3b73"}, {"R", "reserved", "#2f6fd0"}, {"O", "on-demand", "#2aa3a3"}, {"S", "spot", "#7cc46b"}, {"I", "internal", "#9a7fd1"},
	{"p", "provisioning", "#a7c7e7"}, {"m", "maintenance / cordoned", "#8a8f98"}, {"d", "degraded", "#f0b429"},
	{"r", "repair / burn-in / sanitizing", "#c2410c"}, {"u", "unreachable", "#f97316"}, {"f", "failed", "#d7263d"}, {"x", "retired", "#ffffff"},
}

type legend struct{ Code, Name, Color string }

func stateCode(n *fleet.Node, u sales.NodeUse, used bool) byte {
	switch {
	case n.Lifecycle == fleet.LifecycleRetired:
		return 'x'
	case n.Health == fleet.HealthFailed:
		return 'f'
	case n.Health == fleet.HealthUnreachable:
		return 'u'
	case n.Lifecycle == fleet.LifecycleRepair || n.Lifecycle == fleet.LifecycleBurnIn || n.Lifecycle == fleet.LifecycleSanitizing:
		return 'r'
	case n.Health == fleet.HealthDegraded:
		return 'd'
	case n.Lifecycle == fleet.LifecycleMaintenance:
		return 'm'
	case used:
		return map[string]byte{"lease": 'L', "reserved": 'R', "on_demand": 'O', "spot": 'S', "internal": 'I'}[string(u.Class)]
	case n.Lifecycle == fleet.LifecycleProvisioning:
		return 'p'
	case n.Cordoned:
		return 'm'
	case n.Spare:
		return 's'
	}
	return 'a'
}

// tenantPalette colours tenants by their order of appearance.
var tenantPalette = []string{"#1f3b73", "#2f6fd0", "#2aa3a3", "#7cc46b", "#9a7fd1", "#e377c2", "#bcbd22", "#17becf", "#8c564b", "#ff7f0e", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"}

type tile struct {
	Path, Label string
	Nodes, GPUs int
	Cells       string
	Bad         int
}

type nodeCell struct {
	ID, Hostname, Code, Title string
}

type crumb struct{ Label, Href string }

type topologyData struct {
	Sites    []fleet.Site
	Site     fleet.Site
	Domain   string
	By       string
	Level    string // the level of the tiles
	Crumbs   []crumb
	Tiles    []tile
	Nodes    []nodeCell
	Legend   []legend
	Palette  string
	Duration time.Duration
}

func (c *Console) topology(w http.ResponseWriter, r *http.Request, s session) {
	start := time.Now()
	ctx := r.Context()
	q := r.URL.Query()
	sites := c.cfg.Fleet.Snapshot.Sites()
	if len(sites) == 0 {
		c.render(w, r, http.StatusOK, "topology", "topology", "Topology", s, topologyData{})
		return
	}
	site := sites[0]
	if ref := q.Get("site"); ref != "" {
		var err error
		if site, err = c.cfg.Fleet.Site(r.Context(), ref); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	domain := strings.Trim(q.Get("domain"), "/")
	by := q.Get("by")
	if by != "tenant" {
		by = "state"
	}
	depth := 0
	if domain != "" {
		depth = strings.Count(domain, "/") + 1
	}
	if depth > len(site.Levels) {
		c.fail(w, r, neocloud.Invalid("domain", "site %s has %d levels", site.Name, len(site.Levels)))
		return
	}
	uses, err := c.nodeUses(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := topologyData{Sites: sites, Site: site, Domain: domain, By: by}
	d.Crumbs = append(d.Crumbs, crumb{site.Name, "/topology?" + url.Values{"site": {site.Name}, "by": {by}}.Encode()})
	if domain != "" {
		parts := strings.Split(domain, "/")
		for i := range parts {
			p := strings.Join(parts[:i+1], "/")
			d.Crumbs = append(d.Crumbs, crumb{site.Levels[i] + " " + parts[i], "/topology?" + url.Values{"site": {site.Name}, "domain": {p}, "by": {by}}.Encode()})
		}
	}
	// Colours by tenant: one code per tenant, in order of appearance.
	names := map[string]string{}
	tenantCode := map[string]byte{}
	var tl []legend
	if by == "tenant" {
		names = c.tenantNames(ctx)
		tl = []legend{{".", "idle", "#d9dee5"}, {"!", "out of service", "#d7263d"}}
	}
	code := func(n *fleet.Node) byte {
		u, used := uses[n.ID]
		if by == "state" {
			return stateCode(n, u, used)
		}
		switch {
		case down(n) || n.Lifecycle == fleet.LifecycleRetired:
			return '!'
		case !used:
			return '.'
		}
		k, ok := tenantCode[u.TenantID]
		if !ok {
			i := len(tenantCode)
			k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[min(i, 61)]
			tenantCode[u.TenantID] = k
			if i < 61 {
				tl = append(tl, legend{string(k), names[u.TenantID], tenantPalette[i%len(tenantPalette)]})
			}
		}
		return k
	}
	f := fleet.NodeFilter{SiteID: site.ID, Domain: domain}
	if depth == len(site.Levels) {
		// A leaf domain: its nodes, one by one.
		c.cfg.Fleet.Snapshot.Each(f, func(n *fleet.Node) {
			k := code(n)
			title := fmt.Sprintf("%s: %s, %s", n.Hostname, n.Lifecycle, n.Health)
			if u, ok := uses[n.ID]; ok {
				title += ", " + string(u.Class) + " " + u.ReservationID
			}
			d.Nodes = append(d.Nodes, nodeCell{n.ID, n.Hostname, string(k), title})
		})
	} else {
		d.Level = site.Levels[depth]
		byPath := map[string]*tile{}
		var order []string
		var cells = map[string]*bytes.Buffer{}
		c.cfg.Fleet.Snapshot.Each(f, func(n *fleet.Node) {
			segs := strings.SplitN(n.Domain, "/", depth+2)
			if len(segs) <= depth {
				return
			}
			p := strings.Join(segs[:depth+1], "/")
			t := byPath[p]
			if t == nil {
				t = &tile{Path: p, Label: d.Level + " " + segs[depth]}
				byPath[p] = t
				cells[p] = &bytes.Buffer{}
				order = append(order, p)
			}
			t.Nodes++
			t.GPUs += len(n.GPUs)
			k := code(n)
			if k == 'f' || k == 'u' || k == 'r' || k == '!' {
				t.Bad++
			}
			cells[p].WriteByte(k)
		})
		slices.Sort(order)
		for _, p := range order {
			t := byPath[p]
			t.Cells = cells[p].String()
			d.Tiles = append(d.Tiles, *t)
		}
	}
	d.Legend = stateLegend
	if by == "tenant" {
		d.Legend = tl
	}
	pal := map[string]string{}
	for _, l := range d.Legend {
		pal[l.Code] = l.Color
	}
	for _, k := range tenantCode {
		if _, ok := pal[string(k)]; !ok {
			pal[string(k)] = "#555"
		}
	}
	b, _ := json.Marshal(pal)
	d.Palette = string(b)
	d.Duration = time.Since(start)
	c.render(w, r, http.StatusOK, "topology", "topology", "Topology", s, d)
}

type nodeData struct {
	Node      fleet.Node
	Use       *sales.NodeUse
	Tenant    string
	Agent     *agents.State
	Tickets   []agents.RepairTicket
	Sanitized []agents.SanitizeRecord
	Commands  []agents.NodeCommand
	Admin     bool
	Error     string
	Actions   []string
	// Quarantined is why the node's open repair holds it for review: its
	// repair-done asks the operator to confirm that they reviewed it.
	Quarantined string
}

func (c *Console) nodeData(ctx context.Context, ref string, s session) (nodeData, error) {
	n, err := c.cfg.Fleet.Node(ctx, ref)
	if err != nil {
		return nodeData{}, err
	}
	d := nodeData{Node: n, Admin: s.P.Role == neocloud.RoleOperatorAdmin}
	uses, err := c.nodeUses(ctx)
	if err != nil {
		return d, err
	}
	if u, ok := uses[n.ID]; ok {
		d.Use = &u
		d.Tenant = c.tenantNames(ctx)[u.TenantID]
	}
	if st, err := c.cfg.Agents.Latest(ctx, n.ID); err == nil {
		d.Agent = &st
	} else if neocloud.ErrorKind(err) != neocloud.KindNotFound {
		return d, err
	}
	if d.Tickets, err = c.cfg.Agents.Store.Tickets(ctx, n.ID, false); err != nil {
		return d, err
	}
	for _, t := range d.Tickets {
		if t.Quarantined && t.ClosedAt == nil {
			d.Quarantined = t.Message
		}
	}
	if d.Sanitized, err = c.cfg.Agents.Store.SanitizeRecords(ctx, n.ID); err != nil {
		return d, err
	}
	if d.Commands, err = c.cfg.Agents.Store.Commands(ctx, n.ID, false); err != nil {
		return d, err
	}
	if len(d.Commands) > 10 {
		d.Commands = d.Commands[:10]
	}
	for _, a := range nodeActions {
		if a == "repair-done" && n.Lifecycle != fleet.LifecycleRepair {
			continue
		}
		if (a == "cordon" || a == "drain") && n.Cordoned || a == "uncordon" && !n.Cordoned {
			continue
		}
		if (a == "maintenance" || a == "available") && !fleet.CanTransition(n.Lifecycle, fleet.Lifecycle(a)) {
			continue
		}
		if a == "fail" && (n.Lifecycle == fleet.LifecycleRepair || n.Lifecycle == fleet.LifecycleRetired) {
			continue
		}
		d.Actions = append(d.Actions, a)
	}
	return d, nil
}

// nodeActions are the node page's actions; fail takes a reason.
var nodeActions = []string{"cordon", "uncordon", "drain", "maintenance", "available", "repair-done", "fail"}

func (c *Console) node(w http.ResponseWriter, r *http.Request, s session) {
	d, err := c.nodeData(r.Context(), r.PathValue("node"), s)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "node", "topology", d.Node.Hostname, s, d)
}

// telemetry answers a node's minute rollups over the last hours (of the
// control plane's clock) as columns for a chart.
func (c *Console) telemetry(w http.ResponseWriter, r *http.Request, _ session) {
	n, ok := c.cfg.Fleet.Snapshot.Node(r.PathValue("node"))
	if !ok {
		c.fail(w, r, neocloud.NotFound("node", r.PathValue("node")))
		return
	}
	hours := 12
	now := c.cfg.Now().UTC()
	ms, err := c.cfg.Agents.Store.Minutes(r.Context(), n.ID, now.Add(-time.Duration(hours)*time.Hour), now.Add(time.Minute))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	out := map[string][]float64{"t": {}, "power_w": {}, "power_max_w": {}, "temp_max_c": {}}
	for _, m := range ms {
		out["t"] = append(out["t"], float64(m.Minute.Unix()))
		out["power_w"] = append(out["power_w"], m.PowerAvgW)
		out["power_max_w"] = append(out["power_max_w"], m.PowerMaxW)
		out["temp_max_c"] = append(out["temp_max_c"], m.TempMaxC)
	}
	writeJSON(w, out)
}

// gpus answers the node's last report per GPU, for the page's live chart
// (the browser keeps the points it has seen).
func (c *Console) gpus(w http.ResponseWriter, r *http.Request, _ session) {
	n, ok := c.cfg.Fleet.Snapshot.Node(r.PathValue("node"))
	if !ok {
		c.fail(w, r, neocloud.NotFound("node", r.PathValue("node")))
		return
	}
	st, err := c.cfg.Agents.Latest(r.Context(), n.ID)
	if neocloud.ErrorKind(err) == neocloud.KindNotFound {
		writeJSON(w, map[string]any{"seq": 0})
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	out := map[string]any{"seq": st.Seq, "at": st.Heartbeat.At.Unix()}
	gs := st.Heartbeat.GPUs
	power, temp, util := make([]float64, len(gs)), make([]float64, len(gs)), make([]float64, len(gs))
	for i, g := range gs {
		power[i], temp[i], util[i] = g.PowerW, g.TempC, g.UtilPct
	}
	out["power_w"], out["temp_c"], out["util_pct"] = power, temp, util
	writeJSON(w, out)
}

// act performs a node action through the API, as the session's token
// (operator has refused a POST from another site), and answers the node's status block (or, without htmx, the node page).
func (c *Console) act(w http.ResponseWriter, r *http.Request, s session) {
	action := r.PathValue("action")
	if !slices.Contains(nodeActions, action) {
		http.NotFound(w, r)
		return
	}
	ref := r.PathValue("node")
	n, err := c.cfg.Fleet.Node(r.Context(), ref)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	body := []byte("{}")
	switch action {
	case "fail":
		body, _ = json.Marshal(map[string]string{"reason": r.PostFormValue("reason")})
	case "repair-done":
		body, _ = json.Marshal(map[string]bool{"force": r.PostFormValue("force") == "true"})
	}
	req := httptest.NewRequestWithContext(r.Context(), http.MethodPost, "/v1/nodes/"+url.PathEscape(n.ID)+"/"+action, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.secret)
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = r.RemoteAddr
	rec := httptest.NewRecorder()
	c.cfg.API.ServeHTTP(rec, req)
	msg := ""
	if rec.Code >= 300 {
		msg = problemText(rec.Body)
	}
	if r.Header.Get("HX-Request") != "true" {
		if msg != "" {
			http.Error(w, msg, rec.Code)
			return
		}
		http.Redirect(w, r, "/nodes/"+url.PathEscape(n.ID), http.StatusSeeOther)
		return
	}
	c.Changed() // read what the action changed
	d, err := c.nodeData(r.Context(), n.ID, s)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Error = msg
	c.fragment(w, r, "node", "node-status", d)
}

// sameOrigin refuses requests another site made: the cookie is
// SameSite=Strict already; Origin (or Sec-Fetch-Site), when the browser
// sends it, must name this host.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

func problemText(body *bytes.Buffer) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body.Bytes(), &p) == nil && (p.Detail != "" || p.Title != "") {
		if p.Detail != "" {
			return p.Detail
		}
		return p.Title
	}
	return strings.TrimSpace(body.String())
}

type reservationsData struct {
	Rows    []sales.Reservation
	Tenants map[string]string
	Class   string
	State   string
	Classes []string
	States  []string
}

func (c *Console) reservations(w http.ResponseWriter, r *http.Request, s session) {
	q := r.URL.Query()
	f := sales.ReservationFilter{Class: sales.Class(q.Get("class")), State: sales.ReservationState(q.Get("state"))}
	rows, err := c.cfg.Store.RecentReservations(r.Context(), f, 200)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := reservationsData{Rows: rows, Tenants: c.tenantNames(r.Context()), Class: q.Get("class"), State: q.Get("state"), Classes: classes,
		States: []string{"pending", "scheduled", "active", "ending", "ended", "cancelled", "failed"}}
	c.render(w, r, http.StatusOK, "reservations", "reservations", "Reservations", s, d)
}

type reservationData struct {
	R           sales.Reservation
	Tenant      string
	Allocations []sales.Allocation
	Hostnames   map[string]string
	Waiting     []waitingReplacement
}

// waitingReplacement is a failed node's replacement waiting for the spot
// or internal work reclaimed from its node to leave.
type waitingReplacement struct {
	Failed, Replacement string
	FailedAt            time.Time
}

// waitingReplacements names a reservation's waiting replacements by
// hostname.
func waitingReplacements(r sales.Reservation) []waitingReplacement {
	var out []waitingReplacement
	for _, p := range r.Replacing {
		out = append(out, waitingReplacement{Failed: cmp.Or(p.Failed, p.Replaces), Replacement: r.NodeHostname(p.NodeID), FailedAt: p.FailedAt})
	}
	return out
}

func (c *Console) reservation(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	res, err := c.cfg.Sales.Reservation(ctx, operatorP, r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	as, err := c.cfg.Sales.Allocations(ctx, operatorP, res.ID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	hn := map[string]string{}
	for _, a := range as {
		if n, ok := c.cfg.Fleet.Snapshot.Node(a.NodeID); ok {
			hn[a.NodeID] = n.Hostname
		}
	}
	c.render(w, r, http.StatusOK, "reservation", "reservations", res.ID, s, reservationData{R: res, Tenant: c.tenantNames(ctx)[res.TenantID], Allocations: as, Hostnames: hn,
		Waiting: waitingReplacements(res)})
}

// openReports are the tenants' reports awaiting an operator.
var openReports = sales.BreakFixFilter{Kind: sales.BreakFixReport, State: sales.BreakFixOpen}

type contractsData struct {
	Rows    []sales.ContractView
	Tenants map[string]string
	// Replaced is each contract's replacements this month.
	Replaced map[string]int
}

func (c *Console) contracts(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	var d contractsData
	pg := neocloud.Page{Limit: 200}
	cs, err := c.cfg.Sales.Contracts(ctx, operatorP, "", pg)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d.Replaced = map[string]int{}
	for _, k := range cs {
		if k.Kind == placement.ClassLease {
			v, err := c.cfg.Sales.ContractView(ctx, operatorP, k.ID)
			if err != nil {
				c.fail(w, r, err)
				return
			}
			d.Rows = append(d.Rows, v)
			d.Replaced[k.ID] = v.Delivery.ReplacementsUsed
		}
	}
	for _, k := range cs {
		if k.Kind != placement.ClassLease {
			d.Rows = append(d.Rows, sales.ContractView{Contract: k})
			if d.Replaced[k.ID], err = c.cfg.Sales.ReplacementsThisMonth(ctx, k.ID); err != nil {
				c.fail(w, r, err)
				return
			}
		}
	}
	d.Tenants = c.tenantNames(ctx)
	c.render(w, r, http.StatusOK, "contracts", "contracts", "Contracts", s, d)
}

func (c *Console) quotes(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	qs, err := c.cfg.Sales.Quotes(ctx, operatorP, "", neocloud.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	slices.Reverse(qs)
	c.render(w, r, http.StatusOK, "quotes", "quotes", "Quotes", s, struct {
		Rows    []sales.Quote
		Tenants map[string]string
	}{qs, c.tenantNames(ctx)})
}

func (c *Console) maintenance(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	var all []sales.Maintenance
	for _, site := range c.cfg.Fleet.Snapshot.Sites() {
		ms, err := c.cfg.Sales.Maintenances(ctx, site.ID)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		all = append(all, ms...)
	}
	c.render(w, r, http.StatusOK, "maintenance", "maintenance", "Maintenance", s, all)
}

type healthData struct {
	Incidents    []agents.Incident
	Replacements []replacement
	// Reports are a page of the tenants' reports awaiting an operator,
	// oldest first, of OpenReports; Tickets a page of the open repair
	// tickets, newest first, of OpenTickets; Closed the latest closed.
	// The links page on (Next) and back to the first page (First).
	Reports                   []sales.BreakFix
	OpenReports               int
	NextReports, FirstReports string
	Tickets                   []agents.RepairTicket
	OpenTickets               int
	NextTickets, FirstTickets string
	Closed                    []agents.RepairTicket
	Replicas                  []neocloud.Replica
	Tenants                   map[string]string
	Admin                     bool
	Message                   string
	Error                     string
}

// healthPerPage is how many reports and open tickets the Health page
// lists at a time, unless ?per= says (1 to 1,000).
const healthPerPage = 100

// pageLinks trims a page of the Health page, read with one row more than
// the per it shows, and returns it with the links to the next page (when
// there is one) and back to the first (when not on it): the page's cursor
// is query q's key, keyed by id.
func pageLinks[T any](items []T, per int, q url.Values, key string, id func(T) string) (page []T, next, first string) {
	if len(items) > per {
		items = items[:per]
		next = healthLink(q, key, neocloud.EncodeCursor(id(items[per-1])))
	}
	if q.Get(key) != "" {
		first = healthLink(q, key, "")
	}
	return items, next, first
}

// healthLink is the Health page with query q changed: key set to v
// (removed when empty).
func healthLink(q url.Values, key, v string) string {
	q = maps.Clone(q)
	if v == "" {
		q.Del(key)
	} else {
		q.Set(key, v)
	}
	if len(q) == 0 {
		return "/health"
	}
	return "/health?" + q.Encode()
}

type replacement struct {
	At               time.Time
	Reservation      string
	Failed, Replaced string
	Ready            *time.Time
	ToReady          string
}

func (c *Console) health(w http.ResponseWriter, r *http.Request, s session) {
	c.healthPage(w, r, s, http.StatusOK, "", "")
}

// resolveReport confirms or declines a tenant's report from the health
// page, through the API (its roles, its audit), and shows the page again
// with the outcome.
func (c *Console) resolveReport(w http.ResponseWriter, r *http.Request, s session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	var body any
	switch action {
	case "confirm":
	case "decline":
		body = sales.DeclineInput{Reason: r.PostFormValue("reason")}
	default:
		http.NotFound(w, r)
		return
	}
	rec, err := c.call(r, s, http.MethodPost, "/v1/break-fix/"+url.PathEscape(id)+"/"+action, body)
	if err != nil {
		e := asAPI(err)
		c.healthPage(w, r, s, e.Status, "", e.Message)
		return
	}
	var b sales.BreakFix
	json.Unmarshal(rec.Body.Bytes(), &b)
	c.Changed() // a confirmation fails the node
	msg := fmt.Sprintf("Report %s of %s %s.", b.ID, b.Hostname, b.State)
	if b.State == sales.BreakFixConfirmed {
		msg += " Its work is being replaced and its repair is open."
	}
	c.healthPage(w, r, s, http.StatusOK, msg, "")
}

func (c *Console) healthPage(w http.ResponseWriter, r *http.Request, s session, status int, msg, errMsg string) {
	ctx := r.Context()
	d := healthData{Admin: s.P.Role == neocloud.RoleOperatorAdmin, Message: msg, Error: errMsg}
	// A page's query (after a form's post: the first pages).
	q := url.Values{}
	if r.Method == http.MethodGet {
		for _, k := range []string{"per", "reports", "tickets"} {
			if v := r.URL.Query().Get(k); v != "" {
				q.Set(k, v)
			}
		}
	}
	per := healthPerPage
	if n, err := strconv.Atoi(q.Get("per")); err == nil && n >= 1 && n <= neocloud.MaxLimit {
		per = n
	}
	// A page is read with one row more than it shows: whether there is a
	// next one.
	page := func(cursor string) neocloud.Page { return neocloud.Page{Limit: per + 1, Cursor: cursor} }
	var err error
	if d.Reports, err = c.cfg.Sales.BreakFixes(ctx, s.P, openReports, page(q.Get("reports"))); err != nil {
		c.fail(w, r, err)
		return
	}
	if d.OpenReports, err = c.cfg.Sales.CountBreakFixes(ctx, s.P, openReports); err != nil {
		c.fail(w, r, err)
		return
	}
	d.Reports, d.NextReports, d.FirstReports = pageLinks(d.Reports, per, q, "reports", func(b sales.BreakFix) string { return b.ID })
	if len(d.Reports) > 0 {
		d.Tenants = c.tenantNames(ctx)
	}
	if d.Incidents, err = c.cfg.Agents.Incidents(ctx, false); err != nil {
		c.fail(w, r, err)
		return
	}
	open, closed := false, true
	if d.Tickets, err = c.cfg.Agents.Store.TicketPage(ctx, agents.TicketFilter{Closed: &open}, page(q.Get("tickets"))); err != nil {
		c.fail(w, r, err)
		return
	}
	if d.OpenTickets, err = c.cfg.Agents.Store.CountTickets(ctx, agents.TicketFilter{Closed: &open}); err != nil {
		c.fail(w, r, err)
		return
	}
	d.Tickets, d.NextTickets, d.FirstTickets = pageLinks(d.Tickets, per, q, "tickets", func(t agents.RepairTicket) string { return t.ID })
	if d.Closed, err = c.cfg.Agents.Store.TicketPage(ctx, agents.TicketFilter{Closed: &closed}, neocloud.Page{Limit: 20}); err != nil {
		c.fail(w, r, err)
		return
	}
	c.cfg.Agents.Located(d.Tickets...)
	c.cfg.Agents.Located(d.Closed...)
	if c.cfg.Replicas != nil {
		if d.Replicas, err = c.cfg.Replicas(ctx); err != nil {
			c.fail(w, r, err)
			return
		}
		for i := range d.Replicas {
			d.Replicas[i].This = d.Replicas[i].ID == c.cfg.Replica
		}
	}
	evs, err := c.cfg.Store.RecentEvents(ctx, 400, "node.replaced", "node.replacement_ready")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	// Pair each replacement with its becoming ready (events are newest
	// first: the ready one, when there is one, was seen first).
	ready := map[string]time.Time{}
	for _, e := range evs {
		str := func(k string) string { v, _ := e.Data[k].(string); return v }
		if e.Kind == "node.replacement_ready" {
			ready[e.Subject+"|"+str("node")] = e.At
			continue
		}
		key := e.Subject + "|" + str("replacement")
		rp := replacement{At: e.At, Reservation: e.Subject, Failed: str("failed"), Replaced: str("replacement")}
		if t, ok := ready[key]; ok {
			rp.Ready, rp.ToReady = &t, t.Sub(e.At).String()
		}
		d.Replacements = append(d.Replacements, rp)
	}
	c.render(w, r, status, "health", "health", "Health", s, d)
}

func (c *Console) events(w http.ResponseWriter, r *http.Request, s session) {
	evs, err := c.cfg.Store.RecentEvents(r.Context(), 200)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	type row struct {
		sales.Event
		Tenant string
		Detail string
	}
	names := c.tenantNames(r.Context())
	rows := make([]row, len(evs))
	for i, e := range evs {
		var parts []string
		for _, k := range sortedKeys(e.Data) {
			parts = append(parts, fmt.Sprintf("%s=%v", k, e.Data[k]))
		}
		rows[i] = row{e, names[e.TenantID], strings.Join(parts, " ")}
	}
	c.render(w, r, http.StatusOK, "events", "events", "Events", s, rows)
}
