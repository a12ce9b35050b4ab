// Package console is the operator console: server-rendered pages of the
// fleet, its sales and its health, served by the same binary as the API,
// with htmx and uPlot embedded (it works with no internet). Sign-in is by
// API token, kept in an HttpOnly same-site cookie; every page is for
// operators, and anyone else gets 404, as the API answers for what is not
// theirs. Actions are API requests made with the session's token, so they
// are authorized, audited and answered (problem+json) exactly as the API's.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/audit"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/finance"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

//go:embed assets templates
var files embed.FS

// Store is what the console reads in bulk.
type Store interface {
	NodeUses(ctx context.Context) ([]sales.NodeUse, error)
	ReservationCounts(ctx context.Context) ([]sales.ReservationCount, error)
	// RecentEvents returns the newest events, newest first, of the kinds
	// given (all when none).
	RecentEvents(ctx context.Context, limit int, kinds ...string) ([]sales.Event, error)
	RecentReservations(ctx context.Context, f sales.ReservationFilter, limit int) ([]sales.Reservation, error)
	// PutUsePoint and UsePoints keep the utilization series (JSON points)
	// across restarts.
	PutUsePoint(ctx context.Context, at time.Time, body []byte, keep time.Duration) error
	UsePoints(ctx context.Context, limit int) ([][]byte, error)
}

// Config wires the console to the services.
type Config struct {
	Tenants *tenant.Service
	Fleet   *fleet.Service
	Sales   *sales.Service
	Agents  *agents.Service
	Billing *billing.Service
	// Power and PowerLoad serve the power and environment page (optional).
	Power     *power.Service
	PowerLoad func(ctx context.Context, siteID string) (map[string]power.NodeLoad, error)
	// Finance serves the finance page (optional).
	Finance *finance.Service
	Store   Store
	// API serves the actions, with the session's token as bearer.
	API     http.Handler
	Now     func() time.Time
	Version string
	Logger  *slog.Logger
	// Banner is shown on every page (the demo says what it is).
	Banner string
	// Audit stores one audit record in a transaction of its own: the
	// console's denied requests are recorded as the API's are (its
	// actions are API requests, recorded there).
	Audit func(ctx context.Context, r audit.Record) error
	// Replicas lists the control plane's server processes for the health
	// page (optional); Replica is the id of this one.
	Replicas func(ctx context.Context) ([]neocloud.Replica, error)
	Replica  string
}

// Console serves the operator pages. Build it with New.
type Console struct {
	cfg   Config
	pages map[string]*template.Template
	mux   *http.ServeMux

	mu     sync.Mutex
	series []Point // utilization over time, oldest first
	uses   usesCache
}

// Point is one sample of the fleet's use: GPUs held by live allocations
// (bound, provisioning, ready or being released) by class, and GPUs down,
// at a time of the control plane's clock.
type Point struct {
	At      time.Time      `json:"at"`
	GPUs    int            `json:"gpus"`
	ByClass map[string]int `json:"by_class"`
	Down    int            `json:"down"`
}

// MaxPoints bounds the utilization series kept in memory (and read back
// at a start); PointsKept is how long the store keeps points.
const (
	MaxPoints  = 2880
	PointsKept = 30 * 24 * time.Hour
)

// load reads the stored utilization series back.
func (c *Console) load(ctx context.Context) error {
	bs, err := c.cfg.Store.UsePoints(ctx, MaxPoints)
	if err != nil {
		return err
	}
	c.series = c.series[:0]
	for _, b := range bs {
		var p Point
		if json.Unmarshal(b, &p) == nil {
			c.series = append(c.series, p)
		}
	}
	return nil
}

type usesCache struct {
	at   time.Time
	byID map[string]sales.NodeUse
}

// New builds the console.
func New(cfg Config) (*Console, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	if err := c.load(context.Background()); err != nil {
		return nil, fmt.Errorf("console: utilization series: %w", err)
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if strings.HasSuffix(n, "/layout.html") {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		c.pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	assets, _ := fs.Sub(files, "assets")
	static := http.FileServerFS(assets)
	c.mux.Handle("GET /assets/", http.StripPrefix("/assets/", cacheFor(static, time.Hour)))
	c.mux.HandleFunc("GET /{$}", c.index)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.HandleFunc("POST /logout", c.logout)
	c.routeTenant()
	c.mux.HandleFunc("GET /topology", c.operator(c.topology))
	c.mux.HandleFunc("GET /nodes/{node}", c.operator(c.node))
	c.mux.HandleFunc("GET /nodes/{node}/telemetry.json", c.operator(c.telemetry))
	c.mux.HandleFunc("GET /nodes/{node}/gpus.json", c.operator(c.gpus))
	c.mux.HandleFunc("POST /nodes/{node}/{action}", c.operator(c.act))
	c.mux.HandleFunc("GET /utilization.json", c.operator(c.utilization))
	c.mux.HandleFunc("GET /clock", c.operator(func(w http.ResponseWriter, _ *http.Request, _ session) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s UTC", c.cfg.Now().UTC().Format("2006-01-02 15:04"))
	}))
	c.mux.HandleFunc("GET /reservations", c.operator(c.reservations))
	c.mux.HandleFunc("GET /reservations/{id}", c.operator(c.reservation))
	c.mux.HandleFunc("GET /contracts", c.operator(c.contracts))
	c.mux.HandleFunc("GET /quotes", c.operator(c.quotes))
	c.mux.HandleFunc("GET /maintenance", c.operator(c.maintenance))
	c.mux.HandleFunc("GET /health", c.operator(c.health))
	c.mux.HandleFunc("POST /health/reports/{id}/{action}", c.operator(c.resolveReport))
	c.mux.HandleFunc("GET /events", c.operator(c.events))
	if cfg.Billing != nil {
		c.mux.HandleFunc("GET /invoices", c.operator(c.invoices))
		if c.cfg.Power != nil {
			c.mux.HandleFunc("GET /power", c.operator(c.powerPage))
			c.mux.HandleFunc("GET /power/series.json", c.operator(c.powerSeries))
			c.mux.HandleFunc("GET /power/export", c.operator(c.exportPower))
		}
		if c.cfg.Finance != nil {
			c.mux.HandleFunc("GET /finance", c.operator(c.financePage))
			c.mux.HandleFunc("GET /finance/utilization.json", c.operator(c.financeUtilization))
			c.mux.HandleFunc("GET /finance/revenue.json", c.operator(c.financeRevenue))
		}
		c.mux.HandleFunc("GET /invoices/usage.json", c.operator(c.usageSeries))
		c.mux.HandleFunc("GET /invoices/{id}", c.operator(c.invoice))
		c.mux.HandleFunc("GET /invoices/{id}/export", c.operator(c.exportInvoice))
		c.mux.HandleFunc("GET /invoices/{id}/lines/{n}", c.operator(c.invoiceLine))
	}
	return c, nil
}

// Handler serves the console.
func (c *Console) Handler() http.Handler { return c.mux }

func cacheFor(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d/time.Second)))
		h.ServeHTTP(w, r)
	})
}

// CookieName is the session cookie: the API token itself, HttpOnly and
// SameSite=Strict (so no other site can make a request with it).
const CookieName = "neocloud_session"

type session struct {
	P      neocloud.Principal
	secret string
}

func (c *Console) session(r *http.Request) (session, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return session{}, false
	}
	p, err := c.cfg.Tenants.Authenticate(r.Context(), ck.Value)
	if err != nil {
		return session{}, false
	}
	return session{P: p, secret: ck.Value}, true
}

type handler func(w http.ResponseWriter, r *http.Request, s session)

// operator serves a page to operators only: anyone else, signed in or
// not, gets 404, so the console's pages do not even show they exist.
func (c *Console) operator(h handler) http.HandlerFunc {
	return c.only(neocloud.Role.Operator, "console", h)
}

// only serves a page to the sessions whose role allowed admits: any other,
// signed in or not, gets 404 (recorded as area-page), and a POST another
// site made 403 (area-post). Answers are never cached.
func (c *Console) only(allowed func(neocloud.Role) bool, area string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.session(r)
		if !ok || !allowed(s.P.Role) {
			c.denied(r, s.P, area+"-page", http.StatusNotFound)
			http.NotFound(w, r)
			return
		}
		if r.Method == http.MethodPost && !sameOrigin(r) {
			c.denied(r, s.P, area+"-post", http.StatusForbidden)
			http.Error(w, "cross-site request refused", http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, s)
	}
}

// denied records a refused request: who (anonymous without a valid
// token), what and where from.
func (c *Console) denied(r *http.Request, p neocloud.Principal, action string, status int) {
	if c.cfg.Audit == nil {
		return
	}
	actor, role := p.TokenID, string(p.Role)
	if actor == "" {
		actor, role = "anonymous", ""
	}
	src, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		src = r.RemoteAddr
	}
	rec := audit.Record{ID: neocloud.NewID(neocloud.PrefixAudit), At: c.cfg.Now().UTC(), Actor: actor, ActorRole: role, ActorTenant: p.TenantID, Tenant: p.TenantID,
		Action: action, Object: r.URL.Path, Status: status, Result: audit.ResultDenied, RequestID: neocloud.NewID(neocloud.PrefixRequest), Source: src}
	if err := c.cfg.Audit(context.WithoutCancel(r.Context()), rec); err != nil {
		c.cfg.Logger.Error("console: audit append failed", "err", err)
	}
}

// page is what every page template gets.
type page struct {
	Title   string
	Nav     string
	Now     time.Time
	Role    neocloud.Role
	Banner  string
	Version string
	Error   string
	Data    any
	Power   bool // the power page is served
	Finance bool // the finance page is served
	// Tenant: the portal's pages and navigation; Admin: a tenant-admin's.
	Tenant bool
	Admin  bool
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, nav, title string, s session, data any) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	p := page{Title: title, Nav: nav, Now: c.cfg.Now().UTC(), Role: s.P.Role, Banner: c.cfg.Banner, Version: c.cfg.Version, Data: data, Power: c.cfg.Power != nil, Finance: c.cfg.Finance != nil && c.cfg.Billing != nil,
		Tenant: s.P.Role.Tenant(), Admin: s.P.Role == neocloud.RoleTenantAdmin}
	var b strings.Builder
	tmpl := "layout.html"
	if r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Target") == "main" {
		tmpl = "main"
	}
	if err := t.ExecuteTemplate(&b, tmpl, p); err != nil {
		c.cfg.Logger.Error("console render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(b.String()))
}

// fragment answers one named block of a page's template (an htmx swap).
func (c *Console) fragment(w http.ResponseWriter, r *http.Request, page, block string, data any) {
	var b strings.Builder
	if err := c.pages[page].ExecuteTemplate(&b, block, data); err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, b.String())
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch neocloud.ErrorKind(err) {
	case neocloud.KindNotFound:
		status = http.StatusNotFound
	case neocloud.KindInvalid:
		status = http.StatusBadRequest
	}
	if status == http.StatusInternalServerError {
		c.cfg.Logger.Error("console", "path", r.URL.Path, "err", err)
	}
	http.Error(w, err.Error(), status)
}

// index is the login page, or the overview for a signed-in operator.
func (c *Console) index(w http.ResponseWriter, r *http.Request) {
	s, ok := c.session(r)
	if ok && s.P.Role.Tenant() {
		http.Redirect(w, r, "/my/reservations", http.StatusSeeOther) // the tenant portal
		return
	}
	if !ok || !s.P.Role.Operator() {
		c.render(w, r, http.StatusOK, "login", "", "Sign in", session{}, struct{ Message string }{""})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	c.overview(w, r, s)
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	secret := strings.TrimSpace(r.PostFormValue("token"))
	p, err := c.cfg.Tenants.Authenticate(r.Context(), secret)
	if err != nil || p.Role == neocloud.RoleAgent {
		c.denied(r, p, "console-login", http.StatusUnauthorized)
		c.render(w, r, http.StatusUnauthorized, "login", "", "Sign in", session{}, struct{ Message string }{"That token is unknown or revoked."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: secret, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// Changed says that allocations may have changed: the next read of what
// nodes serve goes to the store.
func (c *Console) Changed() {
	c.mu.Lock()
	c.uses.byID = nil
	c.mu.Unlock()
}

// nodeUses returns what each node serves now, read at most once a second
// (and again after Changed).
func (c *Console) nodeUses(ctx context.Context) (map[string]sales.NodeUse, error) {
	c.mu.Lock()
	if c.uses.byID != nil && time.Since(c.uses.at) < time.Second {
		defer c.mu.Unlock()
		return c.uses.byID, nil
	}
	c.mu.Unlock()
	us, err := c.cfg.Store.NodeUses(ctx)
	if err != nil {
		return nil, err
	}
	by := make(map[string]sales.NodeUse, len(us))
	for _, u := range us {
		if prev, ok := by[u.NodeID]; ok && prev.State == sales.AllocationReady && u.State != sales.AllocationReady {
			continue // a node partly ready and partly being released shows ready
		}
		u.GPUs += by[u.NodeID].GPUs
		by[u.NodeID] = u
	}
	c.mu.Lock()
	c.uses = usesCache{at: time.Now(), byID: by}
	c.mu.Unlock()
	return by, nil
}

// down reports whether a node is out of service for its health or repair.
func down(n *fleet.Node) bool {
	switch n.Lifecycle {
	case fleet.LifecycleRepair, fleet.LifecycleBurnIn, fleet.LifecycleSanitizing:
		return true
	}
	return n.Health == fleet.HealthFailed || n.Health == fleet.HealthUnreachable
}

// Record adds one point to the utilization series.
func (c *Console) Record(ctx context.Context) error {
	uses, err := c.nodeUses(ctx)
	if err != nil {
		return err
	}
	pt := Point{At: c.cfg.Now().UTC(), ByClass: map[string]int{}}
	c.cfg.Fleet.Snapshot.Each(fleet.NodeFilter{}, func(n *fleet.Node) {
		if n.Lifecycle == fleet.LifecycleRetired {
			return
		}
		g := len(n.GPUs)
		pt.GPUs += g
		if down(n) {
			pt.Down += g
			return
		}
		if u, ok := uses[n.ID]; ok {
			pt.ByClass[string(u.Class)] += min(g, u.GPUs)
		}
	})
	b, _ := json.Marshal(pt)
	if err := c.cfg.Store.PutUsePoint(ctx, pt.At, b, PointsKept); err != nil {
		return err
	}
	c.mu.Lock()
	c.series = append(c.series, pt)
	if len(c.series) > MaxPoints {
		c.series = append([]Point(nil), c.series[len(c.series)-MaxPoints:]...)
	}
	c.mu.Unlock()
	return nil
}

// Run records the utilization series every so often until ctx ends.
func (c *Console) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := c.Record(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			c.cfg.Logger.Warn("console: utilization", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Latest returns the latest point of the utilization series, if any.
func (c *Console) Latest() (Point, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.series) == 0 {
		return Point{}, false
	}
	return c.series[len(c.series)-1], true
}

// Series returns a copy of the utilization series.
func (c *Console) Series() []Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Point(nil), c.series...)
}

var classes = []string{"lease", "reserved", "on_demand", "spot", "internal"}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
