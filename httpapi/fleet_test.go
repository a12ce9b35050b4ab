package httpapi_test

import (
	"strings"
	"testing"

	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

func TestFleetAPI(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		op := e.secrets["operator-admin"]

		// A bad spec names line:column and field, and writes nothing.
		before := e.state()
		bad := strings.Replace(string(e.spec), "sku: h100-sxm5-80gb", "sku: a100", 1)
		r := e.do("POST", "/v1/fleet/apply", op, bad, "Content-Type", "application/yaml")
		if r.status != 422 || !strings.Contains(string(r.body), `"location":"spec:`) || !strings.Contains(string(r.body), "nodes[0].sku") {
			t.Errorf("bad spec: %d %.400s", r.status, r.body)
		}
		if e.state() != before {
			t.Error("a bad spec changed state")
		}

		// The same spec again: nothing changes.
		m := e.do("POST", "/v1/fleet/apply", op, e.spec, "Content-Type", "application/yaml").json(t)
		if m["added"] != 0.0 || m["changed"] != 0.0 || m["retired"] != 0.0 || m["unchanged"] != 64.0 {
			t.Errorf("re-apply: %v", m)
		}

		// Filters.
		count := func(q string) int {
			t.Helper()
			r := e.do("GET", "/v1/nodes?limit=1000&"+q, op, nil)
			if r.status != 200 {
				t.Fatalf("GET /v1/nodes?%s: %d %s", q, r.status, r.body)
			}
			return len(r.json(t)["items"].([]any))
		}
		e.do("POST", "/v1/nodes/"+e.hosts[5]+"/cordon", op, nil)
		e.do("POST", "/v1/nodes/"+e.hosts[6]+"/maintenance", op, nil)
		for q, want := range map[string]int{
			"site=lab": 64, "site=nowhere": 0, "domain=h1": 64, "domain=h1/r1": 32, "domain=h1/r2": 32, "domain=h": 0,
			"cordoned=true": 1, "lifecycle=maintenance": 1, "lifecycle=available": 63, "sku=h100-sxm5-80gb": 64, "health=ok": 64,
			"spare=true": 0,
		} {
			if got := count(q); got != want {
				t.Errorf("nodes?%s: %d, want %d", q, got, want)
			}
		}
		if r := e.do("GET", "/v1/nodes?lifecycle=dancing", op, nil); r.status != 422 {
			t.Errorf("bad lifecycle filter: %d", r.status)
		}

		// An illegal move is a 409 naming the current state; nothing changes.
		e.do("POST", "/v1/nodes/"+e.hosts[7]+"/retire", op, nil)
		r = e.do("POST", "/v1/nodes/"+e.hosts[7]+"/available", op, nil)
		if r.status != 409 || r.json(t)["current_state"] != "retired" {
			t.Errorf("retired → available: %d %s", r.status, r.body)
		}
		if r := e.do("POST", "/v1/nodes/no-such-node/cordon", op, nil); r.status != 404 {
			t.Errorf("missing node: %d", r.status)
		}

		site := e.do("GET", "/v1/sites/lab", op, nil).json(t)
		if site["nodes"] != 63.0 || site["gpus"] != 504.0 || site["cordoned"] != 1.0 {
			t.Errorf("site summary: nodes %v gpus %v cordoned %v", site["nodes"], site["gpus"], site["cordoned"])
		}
		if d := site["domains"].(map[string]any); d["hall"] != 1.0 || d["rack"] != 2.0 {
			t.Errorf("site domains: %v, want 1 hall and 2 racks", d)
		}
		doms := e.do("GET", "/v1/sites/lab/domains?level=rack", op, nil).json(t)["items"].([]any)
		if len(doms) != 2 || doms[0].(map[string]any)["path"] != "h1/r1" || doms[0].(map[string]any)["available"] != 29.0 {
			// r1 holds hosts[0..31]: hosts[5] cordoned, [6] in maintenance, [7] retired (31 left, 29 available).
			t.Errorf("rack domains: %v", doms)
		}
		if r := e.do("GET", "/v1/sites/lab/domains?level=cabinet", op, nil); r.status != 422 {
			t.Errorf("unknown level: %d", r.status)
		}
		if n := e.do("GET", "/v1/nodes/"+e.hosts[0], op, nil).json(t); len(n["gpus"].([]any)) != 8 {
			t.Errorf("node show: %v", n)
		}
		// The apply that created the site is audited with the site as object.
		var object string
		fresh := strings.Replace(string(e.spec), "name: lab", "name: lab-two", 1)
		fresh = strings.ReplaceAll(fresh, "hostname: lab-", "hostname: labtwo-")
		fresh = strings.ReplaceAll(fresh, "serial: SNLAB", "serial: SNLABTWO")
		r = e.do("POST", "/v1/fleet/apply", op, fresh, "Content-Type", "application/yaml")
		if r.status != 200 || r.json(t)["site_created"] != true {
			t.Fatalf("apply of a new site: %d %.300s", r.status, r.body)
		}
		siteID := r.json(t)["site_id"].(string)
		if err := db.RawDB().QueryRow(`SELECT object FROM audit WHERE action = 'apply-fleet' ORDER BY seq DESC LIMIT 1`).Scan(&object); err != nil || object != siteID {
			t.Errorf("audit object of the creating apply = %q (%v), want the new site %s", object, err, siteID)
		}

	})
}
