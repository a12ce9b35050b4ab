package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
	"github.com/neocloud/neocloud/wire"
)

const (
	OA = neocloud.RoleOperatorAdmin
	OV = neocloud.RoleOperatorViewer
	TA = neocloud.RoleTenantAdmin
	TM = neocloud.RoleTenantMember
	AG = neocloud.RoleAgent
)

// rolesTable is the roles table of ARCHITECTURE.md, written out by hand for
// every operation: who may call it at all. Tenant roles reach only their own
// tenant's objects; a foreign one answers 404.
var rolesTable = map[string][]neocloud.Role{
	"get-me":        {OA, OV, TA, TM, AG},
	"create-tenant": {OA},
	"list-tenants":  {OA, OV},
	"get-tenant":    {OA, OV, TA, TM},
	"create-token":  {OA, TA},
	"list-tokens":   {OA, OV, TA, TM},
	"get-token":     {OA, OV, TA, TM},
	"revoke-token":  {OA, TA, TM},
	"list-audit":    {OA, OV, TA},
	"verify-audit":  {OA, OV},
	// Fleet-wide data is the operator's: tenants get 403.
	"apply-fleet":      {OA},
	"list-sites":       {OA, OV},
	"get-site":         {OA, OV},
	"list-domains":     {OA, OV},
	"list-nodes":       {OA, OV},
	"get-node":         {OA, OV},
	"cordon-node":      {OA},
	"uncordon-node":    {OA},
	"drain-node":       {OA},
	"maintenance-node": {OA},
	"available-node":   {OA},
	"retire-node":      {OA},
	"list-skus":        {OA, OV, TA, TM},
	// Selling.
	"set-price":                {OA},
	"list-prices":              {OA, OV, TA, TM},
	"set-quota":                {OA},
	"list-quotas":              {OA, OV, TA},
	"create-quote":             {OA, TA, TM},
	"list-quotes":              {OA, OV, TA, TM},
	"get-quote":                {OA, OV, TA, TM},
	"create-reservation":       {OA, TA},
	"list-reservations":        {OA, OV, TA, TM},
	"get-reservation":          {OA, OV, TA, TM},
	"list-allocations":         {OA, OV, TA, TM},
	"get-reservation-topology": {OA, OV, TA, TM},
	"extend-reservation":       {OA, TA},
	"cancel-reservation":       {OA, TA},
	"list-contracts":           {OA, OV, TA, TM},
	"get-contract":             {OA, OV, TA, TM},
	"create-lease":             {OA},
	"internal-report":          {OA, OV},
	"create-maintenance":       {OA},
	"list-maintenance":         {OA, OV},
	"cancel-maintenance":       {OA},
	// Agents.
	"create-join-token":     {OA},
	"list-join-tokens":      {OA, OV},
	"agent-join":            {}, // public: its bearer is a join token (TestAgentJoin)
	"agent-heartbeat":       {AG},
	"agent-stream":          {AG}, // a stream: TestAgentJoinAndHeartbeats reads it
	"get-node-agent":        {OA, OV, TA, TM},
	"rekey-node":            {OA},
	"node-minutes":          {OA, OV},
	"order-node":            {OA},
	"list-node-commands":    {OA, OV},
	"node-energy":           {OA, OV},
	"node-samples":          {OA, OV},
	"list-incidents":        {OA, OV},
	"list-replicas":         {OA, OV},
	"list-repairs":          {OA, OV},
	"repair-done":           {OA},
	"fail-node":             {OA},
	"node-sanitize-records": {OA, OV},
	// Break-fix: a tenant on its own nodes (another's answer 404).
	"node-report":    {OA, TA},
	"node-reboot":    {OA, TA},
	"node-gpu-reset": {OA, TA},
	"node-replace":   {OA, TA},
	"confirm-report": {OA},
	"decline-report": {OA},
	"list-break-fix": {OA, OV, TA, TM},
	"get-break-fix":  {OA, OV, TA, TM},
	"get-node-bmc":   {OA, OV},
	"set-node-bmc":   {OA},
	"events":         {OA, OV, TA, TM},
	// Billing: usage and invoices, own for tenants; settings the operator's.
	"show-usage":           {OA, OV, TA, TM},
	"derive-usage":         {OA},
	"list-invoices":        {OA, OV, TA, TM},
	"draft-invoice":        {OA, OV, TA, TM},
	"get-invoice":          {OA, OV, TA, TM},
	"export-invoice":       {OA, OV, TA, TM},
	"create-credit-note":   {OA},
	"close-period":         {OA},
	"list-periods":         {OA, OV},
	"get-seller":           {OA, OV},
	"set-seller":           {OA},
	"get-billing-profile":  {OA, OV, TA, TM},
	"set-billing-profile":  {OA},
	"show-credits":         {OA, OV, TA, TM},
	"explain-invoice-line": {OA, OV, TA, TM},
	// Power: a tenant's own share of a site's energy and emissions; the
	// site's capacity and parties the operator's.
	"show-emissions":      {OA, OV, TA, TM},
	"export-emissions":    {OA, OV, TA, TM},
	"show-site-power":     {OA, OV},
	"shed-load":           {OA},
	"put-feed-readings":   {OA},
	"finance-summary":     {OA, OV},
	"finance-utilization": {OA, OV},
	"finance-revenue":     {OA, OV},
	"finance-backlog":     {OA, OV},
	"finance-economics":   {OA, OV},
	"finance-whatif":      {OA, OV},
}

type operation struct{ id, method, path string }

func operations(e *env) []operation {
	var ops []operation
	for path, item := range e.api.OpenAPI().Paths {
		for _, x := range []struct {
			method string
			op     *huma.Operation
		}{{"GET", item.Get}, {"POST", item.Post}, {"PUT", item.Put}, {"PATCH", item.Patch}, {"DELETE", item.Delete}} {
			if x.op != nil {
				ops = append(ops, operation{x.op.OperationID, x.method, path})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].id < ops[j].id })
	return ops
}

// caller is one principal of the matrix.
type caller struct {
	name   string // key into env.secrets, or "anonymous"
	role   neocloud.Role
	tenant string // "a" or "" for callers without a tenant
}

var callers = []caller{
	{"anonymous", "", ""},
	{"operator-admin", OA, ""},
	{"operator-viewer", OV, ""},
	{"a/tenant-admin", TA, "a"},
	{"a/tenant-member", TM, "a"},
	{"agent", AG, ""},
}

// request builds the request for op made by c against its own ("own") or
// another tenant's ("foreign") objects. For tenant callers, own means tenant
// a and foreign tenant b; operators see both.
func (e *env) request(t *testing.T, op operation, c caller, target string, n int) (method, path string, body any, secret string) {
	t.Helper()
	secret = e.secrets[c.name]
	ten := e.a
	if target == "foreign" {
		ten = e.b
	}
	ctx := context.Background()
	opP := neocloud.Principal{TokenID: "tok_setup", Role: OA}
	fresh := func(role neocloud.Role) tenant.Token {
		tok, sec, err := e.tenants.CreateToken(ctx, opP, tenant.CreateTokenInput{Name: "victim", Role: role, Tenant: ten.ID})
		if err != nil {
			t.Fatal(err)
		}
		if c.role == TM && target == "own" {
			secret = sec // a member's own token is itself
		}
		return tok
	}
	path = op.path
	switch op.id {
	case "get-me", "list-tenants", "list-audit", "verify-audit":
	case "list-tokens":
		path += "?tenant=" + ten.Name
	case "create-tenant":
		body = map[string]any{"name": fmt.Sprintf("new-%d", n)}
	case "get-tenant":
		path = strings.Replace(path, "{tenant}", ten.Name, 1)
	case "create-token":
		body = map[string]any{"name": "made", "role": "tenant-member", "tenant": ten.Name}
	case "get-token":
		var id string
		if target == "foreign" {
			id = e.tokIDs["b/tenant-admin"]
		} else if c.role == TM {
			id = e.tokIDs["a/tenant-member"]
		} else {
			id = e.tokIDs["a/tenant-admin"]
		}
		path = strings.Replace(path, "{token}", id, 1)
	case "revoke-token":
		path = strings.Replace(path, "{token}", fresh(TM).ID, 1)
	case "apply-fleet":
		body = e.spec
	case "list-sites", "list-nodes", "list-skus":
	case "get-site":
		path = strings.Replace(path, "{site}", "lab", 1)
	case "list-domains":
		path = strings.Replace(path, "{site}", "lab", 1) + "?level=rack"
	case "get-node", "cordon-node", "uncordon-node", "drain-node", "maintenance-node":
		path = strings.Replace(path, "{node}", e.hosts[0], 1)
	case "available-node":
		if _, err := e.fleet.Act(ctx, e.hosts[1], fleet.ActionMaintenance); err != nil {
			t.Fatal(err)
		}
		path = strings.Replace(path, "{node}", e.hosts[1], 1)
	case "retire-node":
		e.nextRetire++
		path = strings.Replace(path, "{node}", e.hosts[1+e.nextRetire], 1)
	case "set-price":
		body = map[string]any{"sku": "h100-sxm5-80gb", "class": "reserved", "price_per_gpu_hour": "2.40", "effective_at": time.Now().UTC().Add(time.Duration(n) * time.Hour)}
	case "set-quota":
		body = map[string]any{"tenant": ten.Name, "sku": "h100-sxm5-80gb", "class": "spot", "gpus": 64}
	case "list-prices", "list-quotes", "list-reservations", "list-contracts", "events":
	case "internal-report":
		path += "?period=2027-01"
	case "create-join-token":
		path = strings.Replace(path, "{site}", "lab", 1)
		body = map[string]any{"max_uses": 10, "ttl_s": 3600}
	case "list-join-tokens":
		path = strings.Replace(path, "{site}", "lab", 1)
	case "agent-heartbeat":
		body = map[string]any{"version": 1, "seq": n, "at": time.Now().UTC(), "gpus": []any{}}
	case "get-node-agent":
		// A node serving the target tenant, with a report.
		host := e.servedNode(t, ten, false)
		node, _ := e.fleet.Snapshot.Node(host)
		if _, err := e.agents.Heartbeat(ctx, neocloud.Principal{TokenID: "tok_agent", Role: AG, NodeID: node.ID}, wire.Heartbeat{Version: 1, Seq: int64(1000000 + n), At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		path = strings.Replace(path, "{node}", host, 1)
	case "order-node":
		path = strings.Replace(path, "{node}", e.hosts[3], 1)
		body = map[string]any{"kind": "health_check"}
	case "list-node-commands":
		path = strings.Replace(path, "{node}", e.hosts[3], 1)
	case "node-minutes", "node-energy":
		path = strings.Replace(path, "{node}", e.hosts[0], 1) + "?from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z"
	case "node-report", "node-reboot", "node-gpu-reset", "node-replace":
		// A replacement takes the node out of the work: each allowed one
		// gets a node of its own.
		fresh := op.id == "node-replace" && slices.Contains(rolesTable[op.id], c.role)
		path = strings.Replace(path, "{node}", e.servedNode(t, ten, fresh), 1)
		body = map[string]any{"reason": "NCCL all-reduce hangs on this node"}
	case "confirm-report", "decline-report", "get-break-fix":
		// A confirmation fails the node: each gets a node of its own.
		host := e.servedNode(t, ten, op.id == "confirm-report")
		b, err := e.sales.NodeBreakFix(ctx, neocloud.Principal{TokenID: e.tokIDs["a/tenant-admin"], Role: TA, TenantID: ten.ID}, host, sales.BreakFixReport, sales.BreakFixInput{Reason: "ECC errors in our job logs"})
		if err != nil {
			t.Fatal(err)
		}
		path = strings.Replace(path, "{id}", b.ID, 1)
		if op.id == "decline-report" {
			body = map[string]any{"reason": "the node passed a full diagnostic"}
		}
	case "list-break-fix":
	case "get-node-bmc":
		path = strings.Replace(path, "{node}", e.hosts[10], 1)
	case "set-node-bmc":
		path = strings.Replace(path, "{node}", e.hosts[10], 1)
		body = map[string]any{"power": "on"}
	case "node-sanitize-records":
		path = strings.Replace(path, "{node}", e.hosts[0], 1)
	case "repair-done":
		n, _ := e.fleet.Snapshot.Node(e.hosts[9])
		if _, err := e.agents.OpenRepair(context.Background(), n.ID, "gpu 2: XID 79 GPU has fallen off the bus"); err != nil {
			t.Fatal(err)
		}
		path = strings.Replace(path, "{node}", e.hosts[9], 1)
		body = map[string]any{}
	case "fail-node":
		path = strings.Replace(path, "{node}", e.hosts[60], 1)
		body = map[string]any{"reason": "smoke from the PSU"}
	case "node-samples":
		path = strings.Replace(path, "{node}", e.hosts[0], 1) + "?to_seq=10"
	case "rekey-node":
		path = strings.Replace(path, "{node}", e.hosts[2], 1)
	case "list-maintenance", "list-incidents", "list-repairs", "list-replicas":
	case "create-maintenance":
		body = map[string]any{"site": "lease-lab", "domain": "h1/r1", "start": time.Now().UTC().AddDate(2, 0, n), "duration_s": 3600, "reason": "firmware"}
	case "cancel-maintenance":
		m, err := e.sales.CreateMaintenance(ctx, opP, sales.MaintenanceInput{Site: "lease-lab", Domain: "h1/r1", Start: time.Now().UTC().AddDate(3, 0, n), DurationS: 3600, Reason: "firmware"})
		if err != nil {
			t.Fatal(err)
		}
		path = strings.Replace(path, "{maintenance}", m.ID, 1)
	case "list-quotas":
		path += "?tenant=" + ten.Name
	case "create-quote", "create-reservation":
		b := map[string]any{"sku": "h100-sxm5-80gb", "gpus": 8, "class": "on_demand"}
		if c.role.Operator() {
			b["tenant"] = ten.Name
		}
		body = b
	case "get-quote":
		path = strings.Replace(path, "{quote}", e.quotes[tenantKey(target)].ID, 1)
	case "get-reservation", "list-allocations":
		path = strings.Replace(path, "{reservation}", e.rsv[tenantKey(target)].ID, 1)
	case "get-reservation-topology":
		path = strings.Replace(path, "{reservation}", e.rsv[tenantKey(target)].ID, 1) + "?format=slurm"
	case "extend-reservation":
		path = strings.Replace(path, "{reservation}", e.rsv[tenantKey(target)].ID, 1)
		body = map[string]any{"end": e.rsv[tenantKey(target)].Shape.End.Add(time.Duration(n) * time.Minute)}
	case "cancel-reservation":
		start := time.Now().UTC().Add(30 * 24 * time.Hour)
		r, err := e.sales.Reserve(ctx, opP, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: ten.ID, SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassReserved, Start: &start, DurationS: 3600}})
		if err != nil {
			t.Fatal(err)
		}
		path = strings.Replace(path, "{reservation}", r.ID, 1)
	case "create-lease":
		// A hall-sized lease far in the future, one per call.
		body = map[string]any{"tenant": ten.Name, "site": "lease-lab", "domain": "h1/r2", "start": time.Now().UTC().AddDate(1, 0, n), "duration_s": 3600, "price_per_gpu_hour": "1.85"}
	case "get-contract":
		path = strings.Replace(path, "{contract}", e.rsv[tenantKey(target)].ContractID, 1)
	case "show-emissions", "export-emissions":
		path += "?period=" + time.Now().UTC().Format("2006-01") + "&site=lab"
		if c.role.Operator() {
			path += "&tenant=" + ten.Name
		}
	case "show-site-power":
		path = strings.Replace(path, "{site}", "lab", 1)
	case "shed-load":
		path = strings.Replace(path, "{site}", "lab", 1)
		body = map[string]any{"event": "cap", "cap_mw": 100}
	case "finance-summary", "finance-utilization", "finance-revenue", "finance-backlog", "finance-economics":
		path += "?site=lab&period=" + time.Now().UTC().Format("2006-01")
	case "finance-whatif":
		path += "?site=lab&lease_tenant=" + ten.Name + "&rate_per_gpu_hour=1.85&duration_s=86400"
	case "put-feed-readings":
		path = strings.Replace(path, "{site}", "lab", 1)
		body = map[string]any{"readings": []map[string]any{{"feed": "feed-1", "hour": time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour), "wh": 1000}}}
	case "show-usage", "draft-invoice", "show-credits":
		path += "?period=" + time.Now().UTC().Format("2006-01")
		if c.role.Operator() {
			path += "&tenant=" + ten.Name
		}
	case "derive-usage":
		body = map[string]any{"period": time.Now().UTC().AddDate(0, -1, 0).Format("2006-01")}
	case "list-invoices", "list-periods", "get-seller":
	case "get-invoice":
		path = strings.Replace(path, "{invoice}", e.invoices[tenantKey(target)].ID, 1)
	case "explain-invoice-line":
		path = strings.Replace(strings.Replace(path, "{invoice}", e.invoices[tenantKey(target)].ID, 1), "{line}", "1", 1)
	case "export-invoice":
		path = strings.Replace(path, "{invoice}", e.invoices[tenantKey(target)].Number, 1) + "?format=pdf"
	case "create-credit-note":
		path = strings.Replace(path, "{invoice}", e.invoices[tenantKey(target)].ID, 1)
		body = map[string]any{"amount": "0.01", "reason": "goodwill"}
	case "close-period":
		if c.role == OA {
			e.closes++
		}
		body = map[string]any{"period": fmt.Sprintf("2001-%02d", max(1, e.closes))}
	case "set-seller":
		body = map[string]any{"name": "Lab Compute LLC", "invoice_prefix": "INV-", "credit_prefix": "CN-", "payment_terms_days": 30, "close_after_s": 3600}
	case "get-billing-profile":
		path = strings.Replace(path, "{tenant}", ten.Name, 1)
	case "set-billing-profile":
		path = strings.Replace(path, "{tenant}", ten.Name, 1)
		body = map[string]any{"tax_rate_percent": "7.5", "legal_name": ten.Name + " Inc."}
	default:
		t.Fatalf("operation %s has no request in the matrix: add one", op.id)
	}
	return op.method, path, body, secret
}

// servedNode returns a node serving an on-demand reservation of the
// tenant: a new one when fresh, else one kept for the tenant.
func (e *env) servedNode(t *testing.T, ten tenant.Tenant, fresh bool) string {
	if h, ok := e.served[ten.ID]; ok && !fresh {
		return h
	}
	r, err := e.sales.Reserve(context.Background(), neocloud.Principal{TokenID: "tok_setup", Role: OA}, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: ten.ID, SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassOnDemand}})
	if err != nil {
		t.Fatal(err)
	}
	if !fresh {
		e.served[ten.ID] = r.Nodes[0].Hostname
	}
	return r.Nodes[0].Hostname
}

func tenantKey(target string) string {
	if target == "foreign" {
		return "b"
	}
	return "a"
}

// TestRoleMatrix calls every route of the OpenAPI document as every role,
// against own and foreign objects, and checks the status, that a denied
// request changes nothing and leaves one audit record, and that no answer to
// a tenant caller mentions the other tenant.
func TestRoleMatrix(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		e.addLeaseSite()
		foreignIDs := []string{e.b.ID, e.b.Name, e.tokIDs["b/tenant-admin"], e.tokIDs["b/tenant-member"]}
		ops := operations(e)
		if len(ops) != len(rolesTable) {
			t.Errorf("OpenAPI has %d operations, the roles table %d: keep them equal", len(ops), len(rolesTable))
		}
		n := 0
		for _, op := range ops {
			allowed, ok := rolesTable[op.id]
			if !ok {
				t.Errorf("operation %s (%s %s) is missing from the roles table", op.id, op.method, op.path)
				continue
			}
			if op.id == "agent-join" || op.id == "agent-stream" {
				continue // public, or a stream that never ends: tested on their own
			}
			for _, c := range callers {
				for _, target := range []string{"own", "foreign"} {
					n++
					name := fmt.Sprintf("%s/%s/%s", op.id, c.name, target)
					method, path, body, secret := e.request(t, op, c, target, n)
					before, auditBefore := e.state(), e.auditCount()
					r := e.do(method, path, secret, body)

					isAllowed := false
					for _, a := range allowed {
						isAllowed = isAllowed || a == c.role
					}
					scoped := strings.Contains(op.path, "{") || op.id == "create-token"
					var want int
					switch {
					case c.role == "":
						want = 401
					case !isAllowed:
						want = 403
					case c.role.Tenant() && target == "foreign" && scoped:
						want = 404
						if op.id == "create-token" {
							want = 422 // the body names a tenant it cannot see: "no tenant"
						}
					default:
						want = 200
					}
					got := r.status
					if got == 201 {
						got = 200
					}
					if got != want {
						t.Errorf("%s: status %d, want %d: %.300s", name, r.status, want, r.body)
						continue
					}
					denied := want >= 400
					if denied {
						if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
							t.Errorf("%s: Content-Type %q, want application/problem+json", name, ct)
						}
						if after := e.state(); after != before {
							t.Errorf("%s: a denied request changed state:\nbefore:\n%s\nafter:\n%s", name, before, after)
						}
						if d := e.auditCount() - auditBefore; d != 1 {
							t.Errorf("%s: denied request left %d audit records, want 1", name, d)
						}
					} else if method != http.MethodGet && op.id != "agent-heartbeat" { // heartbeats are not audited
						if d := e.auditCount() - auditBefore; d != 1 {
							t.Errorf("%s: mutation left %d audit records, want 1", name, d)
						}
					}
					if c.role.Tenant() {
						sent := path + fmt.Sprint(body)
						for _, id := range foreignIDs {
							// An answer may echo what the caller sent; nothing else of b.
							if strings.Contains(string(r.body), id) && !strings.Contains(sent, id) {
								t.Errorf("%s: answer to tenant a mentions tenant b's %s: %s", name, id, r.body)
							}
						}
					}
				}
			}
		}
	})
}
