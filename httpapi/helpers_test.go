package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/finance"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/httpapi"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
	"github.com/neocloud/neocloud/wire"
)

// env is a server on a loopback port over a real store, with an operator
// and two tenants (a and b), each with an admin and a member token.
type env struct {
	t          testing.TB
	db         *sqlstore.DB
	api        *httpapi.Server
	url        string
	tenants    *tenant.Service
	fleet      *fleet.Service
	spec       []byte
	hosts      []string // hostnames of the test site's nodes
	nextRetire int
	secrets    map[string]string // "operator-admin", "a/tenant-admin", …
	tokIDs     map[string]string
	a, b       tenant.Tenant
	sales      *sales.Service
	agents     *agents.Service
	// per tenant ("a", "b"): a future reserved reservation, a quote
	rsv      map[string]sales.Reservation
	quotes   map[string]sales.Quote
	served   map[string]string // per tenant id: a node serving it (break-fix)
	billing  *billing.Service
	invoices map[string]billing.Invoice // per tenant ("a", "b"): a finalized invoice
	closes   int                        // months closed so far
}

func newEnv(t *testing.T, db *sqlstore.DB) *env { return newEnvTB(t, db) }

func newEnvTB(t testing.TB, db *sqlstore.DB) *env {
	t.Helper()
	ts := tenant.NewService(db)
	fl := fleet.NewService(db, db)
	if err := fl.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	sv := sales.NewService(db, db, fl, ts)
	ag := agents.NewService(db, db, fl, ts)
	agents.Connect(ag, sv)
	ag.OutOfBand = &agents.SimBMC{}
	bl := billing.NewService(db, db)
	bl.Resolve = ts.Resolve
	pw := power.NewService(db, db, fl.Snapshot)
	pw.Resolve = ts.Resolve
	fs := finance.NewService(db, fl.Snapshot)
	fs.Billing, fs.Power, fs.Resolve, fs.Prices = bl, pw, ts.Resolve, db.Prices
	api := httpapi.New(httpapi.Config{Tenants: ts, Fleet: fl, Sales: sv, Agents: ag, Billing: bl, Power: pw, Finance: fs, Shedder: &power.Shedder{
		Nodes:   func(context.Context, string) ([]power.ShedNode, error) { return nil, nil },
		Cap:     func(context.Context, string, int) error { return nil },
		Preempt: func(context.Context, string) error { return nil },
		Record:  db.PutPowerEvent,
	}, Audit: db, Idempotency: db.Idempotency(), Tx: db, Ping: db.Ping,
		Replicas: func(ctx context.Context) ([]neocloud.Replica, error) { return db.Replicas(ctx, time.Now()) }, Replica: ag.Instance})
	// Served as neocloud serve serves it: heartbeats by the front, the
	// rest by net/http.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httpapi.Front{Server: &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}, Fast: httpapi.FastPath, Handler: api.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	e := &env{t: t, db: db, api: api, url: "http://" + ln.Addr().String(), tenants: ts, fleet: fl, sales: sv, agents: ag, billing: bl, secrets: map[string]string{}, tokIDs: map[string]string{},
		rsv: map[string]sales.Reservation{}, quotes: map[string]sales.Quote{}, served: map[string]string{}, invoices: map[string]billing.Invoice{}}
	ctx := context.Background()
	// A small site: 2 racks of 32 H100 nodes.
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	if _, err := fleet.Generate(&spec, fleet.GenerateOptions{Site: "lab", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: 64 * 8,
		Levels: []string{"hall", "rack"}, Fanout: []int{2, 32}}); err != nil {
		t.Fatal(err)
	}
	e.spec = spec.Bytes()
	parsed, err := fleet.ParseSpec(e.spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Apply(ctx, parsed); err != nil {
		t.Fatal(err)
	}
	for _, n := range parsed.Nodes {
		e.hosts = append(e.hosts, n.Hostname)
	}
	op := neocloud.Principal{TokenID: "tok_setup", Role: neocloud.RoleOperatorAdmin}
	if e.a, err = ts.Create(ctx, tenant.CreateInput{Name: "tenant-a"}); err != nil {
		t.Fatal(err)
	}
	if e.b, err = ts.Create(ctx, tenant.CreateInput{Name: "tenant-b"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []neocloud.Role{neocloud.RoleOperatorAdmin, neocloud.RoleOperatorViewer} {
		tok, sec, err := ts.CreateToken(ctx, op, tenant.CreateTokenInput{Name: "op", Role: r})
		if err != nil {
			t.Fatal(err)
		}
		e.secrets[string(r)], e.tokIDs[string(r)] = sec, tok.ID
	}
	for _, tn := range []tenant.Tenant{e.a, e.b} {
		for _, r := range []neocloud.Role{neocloud.RoleTenantAdmin, neocloud.RoleTenantMember} {
			tok, sec, err := ts.CreateToken(ctx, op, tenant.CreateTokenInput{Name: "fixture", Role: r, Tenant: tn.ID})
			if err != nil {
				t.Fatal(err)
			}
			k := tn.Name[len(tn.Name)-1:] + "/" + string(r)
			e.secrets[k], e.tokIDs[k] = sec, tok.ID
		}
	}
	// Agent credentials are issued at join; make one directly.
	sec := tenant.NewSecret()
	first, _ := fl.Snapshot.Node(e.hosts[0])
	agent := tenant.Token{ID: neocloud.NewID(neocloud.PrefixToken), Name: "agent", Role: neocloud.RoleAgent, NodeID: first.ID, Hint: tenant.Hint(sec), CreatedBy: "test"}
	if err := db.CreateToken(ctx, agent, tenant.HashSecret(sec)); err != nil {
		t.Fatal(err)
	}
	e.secrets["agent"], e.tokIDs["agent"] = sec, agent.ID
	// Selling: a price book, and per tenant a quote and a future reservation.
	for _, p := range []sales.PriceInput{
		{SKU: "h100-sxm5-80gb", Class: placement.ClassReserved, List: "2.50"},
		{SKU: "h100-sxm5-80gb", Class: placement.ClassOnDemand, List: "3.20"},
		{SKU: "h100-sxm5-80gb", Class: placement.ClassSpot, SpotFloor: "0.80", SpotCeiling: "2.40"},
	} {
		if _, err := sv.SetPrice(ctx, op, p); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Hour)
	for k, tn := range map[string]tenant.Tenant{"a": e.a, "b": e.b} {
		in := sales.ShapeInput{Tenant: tn.ID, SKU: "h100-sxm5-80gb", GPUs: 16, Class: placement.ClassReserved, Start: &start, DurationS: 86400}
		q, err := sv.CreateQuote(ctx, op, sales.QuoteInput{ShapeInput: in})
		if err != nil {
			t.Fatal(err)
		}
		r, err := sv.Reserve(ctx, op, sales.ReserveInput{ShapeInput: in})
		if err != nil {
			t.Fatal(err)
		}
		e.quotes[k], e.rsv[k] = q, r
	}
	// Billing: the meter has run; each tenant has a finalized invoice.
	if _, err := bl.Meter(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"a", "b"} {
		tn := map[string]tenant.Tenant{"a": e.a, "b": e.b}[k]
		inv := billing.Invoice{ID: billing.InvoiceID(tn.ID, "2026-12", "USD"), Number: fmt.Sprintf("INV-9%05d", i), Kind: "invoice", State: "final",
			Seller: billing.Party{Name: "lab operator"}, Buyer: billing.Party{Name: tn.Name}, TenantID: tn.ID, TenantName: tn.Name, Period: "2026-12",
			PeriodStart: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), Currency: "USD",
			Lines:          []billing.Line{{N: 1, Kind: billing.LineUsage, Description: "h100 on-demand GPU-hours", Quantity: "312.5", Unit: "GPU-hour", UnitPrice: "3.20", AmountMicros: 1_000_000_000, Amount: "1000.00"}},
			SubtotalMicros: 1_000_000_000, Subtotal: "1000.00", TaxRate: "0", Tax: "0.00", TotalMicros: 1_000_000_000, Total: "1000.00", IssuedAt: time.Now().UTC()}
		if err := db.InsertInvoice(ctx, inv); err != nil {
			t.Fatal(err)
		}
		e.invoices[k] = inv
	}
	return e
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request with the given secret ("" for none) and headers.
// joinAgents joins agents for n of the site's nodes from the first'th on
// (one join token for all) and returns their credentials.
func (e *env) joinAgents(first, n int) []string {
	e.t.Helper()
	r := e.do("POST", "/v1/sites/lab/join-tokens", e.secrets["operator-admin"], map[string]any{"max_uses": n, "ttl_s": 3600})
	var jt struct{ Secret string }
	if err := json.Unmarshal(r.body, &jt); err != nil || r.status != 201 {
		e.t.Fatalf("join token: %d %s", r.status, r.body)
	}
	creds := make([]string, n)
	for i := range creds {
		node, _ := e.fleet.Snapshot.Node(e.hosts[first+i])
		r := e.do("POST", "/v1/agent/join", jt.Secret, wire.JoinRequest{Version: wire.Version, Hostname: node.Hostname, Serial: node.Serial})
		var jr wire.JoinResponse
		if err := json.Unmarshal(r.body, &jr); err != nil || r.status != 201 {
			e.t.Fatalf("join %d: %d %s", i, r.status, r.body)
		}
		creds[i] = jr.Credential
	}
	return creds
}

func (e *env) do(method, path, secret string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// state is a comparable snapshot of everything the API can change, except
// the audit trail (which every request may append to).
// addLeaseSite applies a second, small site of another SKU (h200), where
// leases find nodes no other test's work holds.
func (e *env) addLeaseSite() {
	e.t.Helper()
	h200, _ := fleet.CatalogSKU("h200-sxm-141gb")
	var lease bytes.Buffer
	if _, err := fleet.Generate(&lease, fleet.GenerateOptions{Site: "lease-lab", Region: "lab", Timezone: "UTC", SKU: h200, GPUs: 8 * 8,
		Levels: []string{"hall", "rack"}, Fanout: []int{2, 4}}); err != nil {
		e.t.Fatal(err)
	}
	spec, err := fleet.ParseSpec(lease.Bytes())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.fleet.Apply(context.Background(), spec); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) state() string {
	e.t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT id || name || display_name FROM tenants ORDER BY id`,
		`SELECT id || name || role || COALESCE(tenant_id, '') || COALESCE(CAST(revoked_at AS TEXT), '-') FROM tokens ORDER BY id`,
		`SELECT id || lifecycle || CAST(version AS TEXT) FROM nodes ORDER BY id`,
		`SELECT id || CAST(updated_at AS TEXT) FROM sites ORDER BY id`,
		`SELECT id FROM prices ORDER BY id`,
		`SELECT tenant_id || sku || class || CAST(gpus AS TEXT) FROM quotas ORDER BY tenant_id, sku, class`,
		`SELECT id || state FROM quotes ORDER BY id`,
		`SELECT id || state || CAST(version AS TEXT) FROM reservations ORDER BY id`,
		`SELECT id FROM contracts ORDER BY id`,
		`SELECT id || state || CAST(version AS TEXT) FROM allocations ORDER BY id`,
		`SELECT id || number FROM invoices ORDER BY id`,
		`SELECT period FROM billing_periods ORDER BY period`,
		`SELECT tenant_id || body FROM billing_profiles ORDER BY tenant_id`,
		`SELECT body FROM billing_seller`,
	} {
		rows, err := e.db.RawDB().Query(q)
		if err != nil {
			e.t.Fatal(err)
		}
		for rows.Next() {
			var s string
			rows.Scan(&s)
			b.WriteString(s + "\n")
		}
		rows.Close()
	}
	return b.String()
}

func (e *env) auditCount() int {
	e.t.Helper()
	var n int
	if err := e.db.RawDB().QueryRow(`SELECT COUNT(*) FROM audit`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}
