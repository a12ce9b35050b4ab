package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

var (
	opAdminTenants = []neocloud.Role{neocloud.RoleOperatorAdmin, neocloud.RoleTenantAdmin, neocloud.RoleTenantMember}
	anyHuman       = []neocloud.Role{neocloud.RoleOperatorAdmin, neocloud.RoleOperatorViewer, neocloud.RoleTenantAdmin, neocloud.RoleTenantMember}
)

type reservationOut struct{ Body sales.Reservation }

func (s *Server) registerSales() {
	sv := s.cfg.Sales

	register(s, opAdmin, huma.Operation{OperationID: "set-price", Method: http.MethodPost, Path: "/v1/prices", Summary: "Set a price",
		Description: "Adds an entry to the price book for a SKU and class from effective_at on (never retroactive). Earlier entries stay: the book is a time series billing integrates over. Spot entries carry a floor and a ceiling; the spot rate is floor + (ceiling − floor) × u², u the site's GPU utilization.",
		Tags:        []string{"prices"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct{ Body sales.PriceInput }) (*struct{ Body pricing.Price }, error) {
			p, err := sv.SetPrice(ctx, principal(ctx), in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = p.ID
			return &struct{ Body pricing.Price }{p}, nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "list-prices", Method: http.MethodGet, Path: "/v1/prices", Summary: "List the price book",
		Description: "Every entry, by SKU, class and effective_at; with current, only the entries in effect now.", Tags: []string{"prices"}},
		func(ctx context.Context, in *struct {
			SKU     string `query:"sku"`
			Class   string `query:"class"`
			Current bool   `query:"current" doc:"Only the entry in effect now per SKU and class."`
		}) (*struct{ Body List[pricing.Price] }, error) {
			book, err := sv.Store.Prices(ctx)
			if err != nil {
				return nil, err
			}
			items := []pricing.Price{}
			now := s.cfg.Now()
			for i, p := range book {
				if (in.SKU != "" && p.SKU != in.SKU) || (in.Class != "" && p.Class != in.Class) {
					continue
				}
				if in.Current {
					if p.EffectiveAt.After(now) || (i+1 < len(book) && book[i+1].SKU == p.SKU && book[i+1].Class == p.Class && !book[i+1].EffectiveAt.After(now)) {
						continue
					}
				}
				items = append(items, p)
			}
			return &struct{ Body List[pricing.Price] }{List[pricing.Price]{Items: items}}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "set-quota", Method: http.MethodPut, Path: "/v1/quotas", Summary: "Set a tenant's quota",
		Description: "Caps the GPUs a tenant may hold at once (reservations and holds overlapping in time) in one SKU and class. Without a quota there is no cap.", Tags: []string{"quotas"}},
		func(ctx context.Context, in *struct {
			Body struct {
				Tenant string      `json:"tenant" minLength:"1"`
				SKU    string      `json:"sku" minLength:"1"`
				Class  sales.Class `json:"class" enum:"reserved,on_demand,spot"`
				GPUs   int64       `json:"gpus" minimum:"0"`
			}
		}) (*struct{ Body sales.Quota }, error) {
			q, err := sv.SetQuota(ctx, principal(ctx), in.Body.Tenant, in.Body.SKU, in.Body.Class, in.Body.GPUs)
			if err != nil {
				return nil, err
			}
			info(ctx).Object, info(ctx).Tenant = q.TenantID+"/"+q.SKU+"/"+string(q.Class), q.TenantID
			return &struct{ Body sales.Quota }{q}, nil
		})

	register(s, opReadTA, huma.Operation{OperationID: "list-quotas", Method: http.MethodGet, Path: "/v1/quotas", Summary: "List quotas", Tags: []string{"quotas"}},
		func(ctx context.Context, in *struct {
			Tenant string `query:"tenant" doc:"Tenant name or id (operators)."`
		}) (*struct{ Body List[sales.Quota] }, error) {
			p := principal(ctx)
			id := p.TenantID
			if p.Role.Operator() && in.Tenant != "" {
				t, err := s.cfg.Tenants.Resolve(ctx, p, in.Tenant)
				if err != nil {
					return nil, err
				}
				id = t.ID
			}
			qs, err := sv.Store.Quotas(ctx, id)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[sales.Quota] }{List[sales.Quota]{Items: nonNil(qs)}}, nil
		})

	register(s, opAdminTenants, huma.Operation{OperationID: "create-quote", Method: http.MethodPost, Path: "/v1/quotes", Summary: "Ask for a quote",
		Description: "Prices a shape (SKU × GPUs × start × duration × topology constraint × class) and says whether it fits at the asked start; if not, the earliest start and looser alternatives. With hold, the capacity is held until the quote expires (open holds are capped per tenant).",
		Tags:        []string{"quotes"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct{ Body sales.QuoteInput }) (*struct{ Body sales.Quote }, error) {
			q, err := sv.CreateQuote(ctx, principal(ctx), in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object, info(ctx).Tenant = q.ID, q.TenantID
			return &struct{ Body sales.Quote }{q}, nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "list-quotes", Method: http.MethodGet, Path: "/v1/quotes", Summary: "List quotes", Tags: []string{"quotes"}},
		func(ctx context.Context, in *struct{ PageParams }) (*struct{ Body List[sales.Quote] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			qs, err := sv.Quotes(ctx, principal(ctx), "", pg)
			if err != nil {
				return nil, err
			}
			return listOf(nonNil(qs), limitOf(pg), func(q sales.Quote) string { return q.ID }), nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "get-quote", Method: http.MethodGet, Path: "/v1/quotes/{quote}", Summary: "Show a quote", Tags: []string{"quotes"}},
		func(ctx context.Context, in *struct {
			Quote string `path:"quote"`
		}) (*struct{ Body sales.Quote }, error) {
			q, err := sv.Quote(ctx, principal(ctx), in.Quote)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body sales.Quote }{q}, nil
		})

	register(s, opAdminTA, huma.Operation{OperationID: "create-reservation", Method: http.MethodPost, Path: "/v1/reservations", Summary: "Reserve capacity",
		Description: "From a quote (its hold becomes the reservation) or directly from a shape. The calendar admits it on concrete nodes inside this request's transaction; reserved capacity gets its own contract, on-demand and spot use the tenant's standing contract. Allocations are bound at the lead time before start (at once for on-demand and spot).",
		Tags:        []string{"reservations"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct{ Body sales.ReserveInput }) (*reservationOut, error) {
			r, err := sv.Reserve(ctx, principal(ctx), in.Body)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			info(ctx).Object, info(ctx).Tenant = r.ID, r.TenantID
			return &reservationOut{r}, nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "list-reservations", Method: http.MethodGet, Path: "/v1/reservations", Summary: "List reservations", Tags: []string{"reservations"}},
		func(ctx context.Context, in *struct {
			PageParams
			State string `query:"state" enum:"pending,scheduled,active,ending,ended,cancelled,failed,"`
			Class string `query:"class" enum:"reserved,on_demand,spot,"`
		}) (*struct{ Body List[sales.Reservation] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			rs, err := sv.Reservations(ctx, principal(ctx), sales.ReservationFilter{State: sales.ReservationState(in.State), Class: placement.Class(in.Class)}, pg)
			if err != nil {
				return nil, err
			}
			return listOf(nonNil(rs), limitOf(pg), func(r sales.Reservation) string { return r.ID }), nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "get-reservation", Method: http.MethodGet, Path: "/v1/reservations/{reservation}", Summary: "Show a reservation", Tags: []string{"reservations"}},
		func(ctx context.Context, in *struct {
			Reservation string `path:"reservation"`
		}) (*reservationOut, error) {
			r, err := sv.Reservation(ctx, principal(ctx), in.Reservation)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &reservationOut{r}, nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "list-allocations", Method: http.MethodGet, Path: "/v1/reservations/{reservation}/allocations", Summary: "List a reservation's allocations", Tags: []string{"reservations"}},
		func(ctx context.Context, in *struct {
			Reservation string `path:"reservation"`
		}) (*struct{ Body List[sales.Allocation] }, error) {
			as, err := sv.Allocations(ctx, principal(ctx), in.Reservation)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body List[sales.Allocation] }{List[sales.Allocation]{Items: nonNil(as)}}, nil
		})

	register(s, opAdminTA, huma.Operation{OperationID: "extend-reservation", Method: http.MethodPost, Path: "/v1/reservations/{reservation}/extend", Summary: "Extend a reservation on the same nodes",
		Description: "Moves the end later on the same nodes, or answers 409 with how far the same nodes allow and when a new reservation could start.", Tags: []string{"reservations"}},
		func(ctx context.Context, in *struct {
			Reservation string `path:"reservation"`
			Body        struct {
				End time.Time `json:"end" doc:"The new end, RFC 3339."`
			}
		}) (*reservationOut, error) {
			r, err := sv.Extend(ctx, principal(ctx), in.Reservation, in.Body.End)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			info(ctx).Object, info(ctx).Tenant = r.ID, r.TenantID
			return &reservationOut{r}, nil
		})

	register(s, opAdminTA, huma.Operation{OperationID: "cancel-reservation", Method: http.MethodPost, Path: "/v1/reservations/{reservation}/cancel", Summary: "Cancel a reservation",
		Description: "Before its allocations are bound: cancelled at once. After: it ends now, its nodes released through network detach and sanitize (for on-demand and spot, this is how capacity is given back; billing stops at release).", Tags: []string{"reservations"}},
		func(ctx context.Context, in *struct {
			Reservation string `path:"reservation"`
		}) (*reservationOut, error) {
			r, err := sv.Cancel(ctx, principal(ctx), in.Reservation)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			info(ctx).Object, info(ctx).Tenant = r.ID, r.TenantID
			return &reservationOut{r}, nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "get-reservation-topology", Method: http.MethodGet, Path: "/v1/reservations/{reservation}/topology", Summary: "A reservation's nodes as scheduler topology",
		Description: "format=slurm: a Slurm topology.conf (tree: a switch per domain). format=k8s: kubectl label commands putting each node's domains in topology.neocloud.io/<level> labels.", Tags: []string{"reservations"}},
		func(ctx context.Context, in *struct {
			Reservation string `path:"reservation"`
			Format      string `query:"format" enum:"slurm,k8s" required:"true"`
		}) (*struct {
			ContentType string `header:"Content-Type"`
			Body        []byte
		}, error) {
			r, err := sv.Reservation(ctx, principal(ctx), in.Reservation)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			site, _ := s.cfg.Fleet.Snapshot.Site(r.Shape.Site)
			return &struct {
				ContentType string `header:"Content-Type"`
				Body        []byte
			}{"text/plain; charset=utf-8", []byte(Topology(r, site, in.Format))}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "create-maintenance", Method: http.MethodPost, Path: "/v1/maintenance", Summary: "Plan maintenance",
		Description: "Puts maintenance of some nodes (or every node below a domain) on the calendar, each node out for duration_s, rolled in batches so that no reservation has more than its maximum nodes out at once. Future reservations are re-chosen around it where their constraint allows; the tenants of those it still touches are told now, and it is refused (409) if that is later than their contract's maintenance notice. Spot and internal work on those nodes is reclaimed with notice.",
		Tags:        []string{"maintenance"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct{ Body sales.MaintenanceInput }) (*struct{ Body sales.Maintenance }, error) {
			m, err := sv.CreateMaintenance(ctx, principal(ctx), in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = m.ID
			return &struct{ Body sales.Maintenance }{m}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "list-maintenance", Method: http.MethodGet, Path: "/v1/maintenance", Summary: "List planned maintenance", Tags: []string{"maintenance"}},
		func(ctx context.Context, in *struct {
			Site string `query:"site" doc:"Site name or id."`
		}) (*struct{ Body List[sales.Maintenance] }, error) {
			ms, err := sv.Maintenances(ctx, in.Site)
			if err != nil {
				return nil, err
			}
			return &struct{ Body List[sales.Maintenance] }{List[sales.Maintenance]{Items: nonNil(ms)}}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "cancel-maintenance", Method: http.MethodPost, Path: "/v1/maintenance/{maintenance}/cancel", Summary: "Cancel planned maintenance that has not started", Tags: []string{"maintenance"}},
		func(ctx context.Context, in *struct {
			Maintenance string `path:"maintenance"`
		}) (*struct{ Body sales.Maintenance }, error) {
			m, err := sv.CancelMaintenance(ctx, principal(ctx), in.Maintenance)
			if err != nil {
				return nil, err
			}
			info(ctx).Object = m.ID
			return &struct{ Body sales.Maintenance }{m}, nil
		})

	register(s, opRead, huma.Operation{OperationID: "internal-report", Method: http.MethodGet, Path: "/v1/internal/report", Summary: "The hybrid play: what internal work got and lost",
		Description: "Over a period (2027-01, 2027-Q1, 2027-H1, or from/to): GPU-hours the internal tenants' work ran, GPU-hours lost to reclaims (work since the last checkpoint), and the reclaims (steps given back, reservations evicted).", Tags: []string{"internal"}},
		func(ctx context.Context, in *struct {
			Period string    `query:"period" doc:"2027-01, 2027-Q1 or 2027-H1 (UTC)."`
			From   time.Time `query:"from"`
			To     time.Time `query:"to"`
		}) (*struct{ Body sales.InternalReport }, error) {
			from, to := in.From, in.To
			if in.Period != "" {
				var err error
				if from, to, err = neocloud.ParsePeriod(in.Period); err != nil {
					return nil, neocloud.Invalid("query.period", "%v", err)
				}
			}
			if from.IsZero() || !to.After(from) {
				return nil, neocloud.Invalid("query.period", "give a period, or from and to with to after from")
			}
			yes := true
			ts, err := s.cfg.Tenants.List(ctx, tenant.TenantFilter{Internal: &yes}, neocloud.Page{Limit: 1000})
			if err != nil {
				return nil, err
			}
			var ids []string
			for _, t := range ts {
				ids = append(ids, t.ID)
			}
			rep, err := sv.Internal(ctx, from, to, ids)
			if err != nil {
				return nil, err
			}
			return &struct{ Body sales.InternalReport }{rep}, nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "list-contracts", Method: http.MethodGet, Path: "/v1/contracts", Summary: "List contracts",
		Description: "Each with its delivery progress (GPUs ready against contracted) and remaining commitment.", Tags: []string{"contracts"}},
		func(ctx context.Context, in *struct{ PageParams }) (*struct{ Body List[sales.ContractView] }, error) {
			pg := in.page()
			if err := pg.Normalize(); err != nil {
				return nil, err
			}
			cs, err := sv.ContractViews(ctx, principal(ctx), "", pg)
			if err != nil {
				return nil, err
			}
			return listOf(nonNil(cs), limitOf(pg), func(c sales.ContractView) string { return c.ID }), nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "get-contract", Method: http.MethodGet, Path: "/v1/contracts/{contract}", Summary: "Show a contract",
		Description: "With its delivery progress (GPUs ready against contracted, per phase for a lease) and the commitment that remains.", Tags: []string{"contracts"}},
		func(ctx context.Context, in *struct {
			Contract string `path:"contract"`
		}) (*struct{ Body sales.ContractView }, error) {
			c, err := sv.ContractView(ctx, principal(ctx), in.Contract)
			if err != nil {
				return nil, notFoundDenied(ctx, err)
			}
			return &struct{ Body sales.ContractView }{c}, nil
		})

	register(s, opAdmin, huma.Operation{OperationID: "create-lease", Method: http.MethodPost, Path: "/v1/contracts", Summary: "Sign a lease",
		Description: "A lease of every non-spare node of a site or one of its domains (a hall) for a term, on take-or-pay terms, optionally delivered in phases. Admitted only if no committed reservation or maintenance conflicts (the answer names them); spot work on the leased nodes is given notice before each phase starts.",
		Tags:        []string{"contracts"}, DefaultStatus: 201},
		func(ctx context.Context, in *struct{ Body sales.LeaseInput }) (*struct{ Body sales.ContractView }, error) {
			c, err := sv.CreateLease(ctx, principal(ctx), in.Body)
			if err != nil {
				return nil, err
			}
			info(ctx).Object, info(ctx).Tenant = c.ID, c.TenantID
			return &struct{ Body sales.ContractView }{c}, nil
		})

	register(s, anyHuman, huma.Operation{OperationID: "events", Method: http.MethodGet, Path: "/v1/events", Summary: "Events",
		Description: "Reservation and allocation state changes, quote expiries, node replacements; a tenant sees only its own. With Accept: text/event-stream the answer is a Server-Sent Events stream that follows new events (id: is the event's seq; resume with Last-Event-ID or after). Otherwise a JSON list {items, next_cursor} of at most limit events after the cursor (a seq).",
		Tags:        []string{"events"}},
		func(ctx context.Context, in *struct {
			After       string `query:"after" doc:"Resume after this event seq."`
			Cursor      string `query:"cursor" doc:"next_cursor of the previous page (an event seq)."`
			Limit       int    `query:"limit" minimum:"0" maximum:"1000"`
			Accept      string `header:"Accept"`
			LastEventID string `header:"Last-Event-ID"`
		}) (*huma.StreamResponse, error) {
			after, err := eventCursor(cmpOr(in.After, in.Cursor), in.LastEventID)
			if err != nil {
				return nil, err
			}
			p := principal(ctx)
			limit := in.Limit
			if limit == 0 {
				limit = 100
			}
			if !strings.Contains(in.Accept, "text/event-stream") {
				evs, err := sv.Events(ctx, p, after, limit)
				if err != nil {
					return nil, err
				}
				out := List[sales.Event]{Items: nonNil(evs)}
				if len(evs) == limit {
					out.NextCursor = strconv.FormatInt(evs[len(evs)-1].Seq, 10)
				}
				return &huma.StreamResponse{Body: func(hc huma.Context) {
					hc.SetHeader("Content-Type", "application/json")
					json.NewEncoder(hc.BodyWriter()).Encode(out)
				}}, nil
			}
			return &huma.StreamResponse{Body: func(hc huma.Context) { s.streamEvents(hc, p, after) }}, nil
		})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func eventCursor(after, lastID string) (int64, error) {
	v := after
	if v == "" {
		v = lastID
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, neocloud.Invalid("after", "must be an event seq (a non-negative integer)")
	}
	return n, nil
}

// streamEvents writes events after seq as Server-Sent Events until the
// client goes away, waking on new commits (and every second, for events
// another server wrote).
func (s *Server) streamEvents(hc huma.Context, p neocloud.Principal, after int64) {
	ctx := hc.Context()
	w, flush := startStream(hc, "neocloud events")
	beat := time.NewTicker(15 * time.Second)
	defer beat.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		wake := s.events.wait()
		evs, err := s.cfg.Sales.Events(ctx, p, after, 500)
		if err != nil {
			return
		}
		for _, e := range evs {
			b, _ := json.Marshal(e)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Kind, b); err != nil {
				return
			}
			after = e.Seq
		}
		flush()
		if len(evs) == 500 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-s.events.closed():
			return
		case <-wake:
		case <-poll.C:
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flush()
		}
	}
}

// startStream begins a Server-Sent Events answer with a comment line, and
// returns its writer and a flush that pushes what was written.
func startStream(hc huma.Context, banner string) (io.Writer, func()) {
	hc.SetHeader("Content-Type", "text/event-stream")
	hc.SetHeader("Cache-Control", "no-store")
	hc.SetStatus(http.StatusOK)
	w := hc.BodyWriter()
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	fmt.Fprintf(w, ": %s\n\n", banner)
	flush()
	return w, flush
}

// hub wakes event followers after commits that wrote events, and ends
// their streams when the server stops.
type hub struct {
	mu       sync.Mutex
	ch       chan struct{}
	stopOnce sync.Once
	stop     chan struct{}
}

func (h *hub) closed() chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop == nil {
		h.stop = make(chan struct{})
	}
	return h.stop
}

// StopStreams ends every event stream, so that a graceful shutdown need
// not wait for followers that never hang up.
func (s *Server) StopStreams() {
	c := s.events.closed()
	s.events.stopOnce.Do(func() { close(c) })
}

func (h *hub) wait() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ch == nil {
		h.ch = make(chan struct{})
	}
	return h.ch
}

// Wake tells every follower to look for new events.
func (h *hub) Wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ch != nil {
		close(h.ch)
		h.ch = nil
	}
}

// Topology renders a reservation's nodes for the tenant's own scheduler:
// format slurm is a Slurm topology.conf (a switch per domain, nodes on the
// lowest level), k8s kubectl commands labelling each node with its domains.
func Topology(r sales.Reservation, site fleet.Site, format string) string {
	var b strings.Builder
	name := func(path string) string { return strings.ReplaceAll(path, "/", "-") }
	levels := site.Levels
	switch format {
	case "k8s":
		fmt.Fprintf(&b, "# reservation %s: %d nodes\n", r.ID, len(r.Nodes))
		for _, n := range r.Nodes {
			segs := strings.Split(n.Domain, "/")
			fmt.Fprintf(&b, "kubectl label node %s --overwrite topology.neocloud.io/reservation=%s", n.Hostname, r.ID)
			for l := 0; l < len(levels) && l < len(segs); l++ {
				fmt.Fprintf(&b, " topology.neocloud.io/%s=%s", levels[l], strings.Join(segs[:l+1], "-"))
			}
			b.WriteString("\n")
		}
	default:
		fmt.Fprintf(&b, "# topology.conf for reservation %s: %d nodes\n", r.ID, len(r.Nodes))
		// children[path] lists the switches or nodes below a domain.
		children := map[string][]string{}
		var order []string
		add := func(parent, child string) {
			if _, ok := children[parent]; !ok {
				order = append(order, parent)
			}
			if !containsString(children[parent], child) {
				children[parent] = append(children[parent], child)
			}
		}
		for _, n := range r.Nodes {
			segs := strings.Split(n.Domain, "/")
			for l := len(segs); l >= 1; l-- {
				parent := strings.Join(segs[:l], "/")
				if l == len(segs) {
					add(parent, n.Hostname)
				} else {
					add(parent, name(strings.Join(segs[:l+1], "/")))
				}
			}
		}
		sort.Slice(order, func(i, j int) bool {
			di, dj := strings.Count(order[i], "/"), strings.Count(order[j], "/")
			if di != dj {
				return di > dj // leaf switches first
			}
			return order[i] < order[j]
		})
		for _, d := range order {
			kids := children[d]
			sort.Strings(kids)
			kind := "Switches"
			if strings.Count(d, "/") == maxDepth(r.Nodes) {
				kind = "Nodes"
			}
			fmt.Fprintf(&b, "SwitchName=%s %s=%s\n", name(d), kind, strings.Join(kids, ","))
		}
	}
	return b.String()
}

func maxDepth(nodes []sales.NodeGPUs) int {
	d := 0
	for _, n := range nodes {
		d = max(d, strings.Count(n.Domain, "/"))
	}
	return d
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
