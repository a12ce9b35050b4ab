package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/httpapi"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

func tenantCount(t *testing.T, e *env) int {
	t.Helper()
	var n int
	if err := e.db.RawDB().QueryRow(`SELECT COUNT(*) FROM tenants`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIdempotencySequential(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		op := e.secrets["operator-admin"]
		before, auditBefore := tenantCount(t, e), e.auditCount()

		first := e.do("POST", "/v1/tenants", op, `{"name":"idem-1"}`, "Idempotency-Key", "k-1")
		if first.status != 201 {
			t.Fatalf("first: %d %s", first.status, first.body)
		}
		replay := e.do("POST", "/v1/tenants", op, `{"name":"idem-1"}`, "Idempotency-Key", "k-1")
		if replay.status != 201 || !bytes.Equal(first.body, replay.body) {
			t.Errorf("replay: %d %s; want 201 and the first body byte for byte %s", replay.status, replay.body, first.body)
		}
		if replay.header.Get("Idempotent-Replayed") != "true" {
			t.Error("replay lacks Idempotent-Replayed: true")
		}
		if got := tenantCount(t, e) - before; got != 1 {
			t.Errorf("%d tenants created, want 1", got)
		}
		if got := e.auditCount() - auditBefore; got != 1 {
			t.Errorf("%d audit records, want 1 (a replay is no second mutation)", got)
		}

		// Same key, another body: its own problem type, nothing changes.
		mismatch := e.do("POST", "/v1/tenants", op, `{"name":"idem-2"}`, "Idempotency-Key", "k-1")
		if mismatch.status != 422 || mismatch.json(t)["type"] != httpapi.ProblemIdempotencyMismatch {
			t.Errorf("mismatched body: %d %s; want 422 %s", mismatch.status, mismatch.body, httpapi.ProblemIdempotencyMismatch)
		}
		if got := tenantCount(t, e) - before; got != 1 {
			t.Errorf("after mismatch %d tenants created, want 1", got)
		}

		// Errors are replayed too: a 422 stays the same 422.
		bad1 := e.do("POST", "/v1/tenants", op, `{"name":"BAD NAME"}`, "Idempotency-Key", "k-2")
		bad2 := e.do("POST", "/v1/tenants", op, `{"name":"BAD NAME"}`, "Idempotency-Key", "k-2")
		if bad1.status != 422 || bad2.status != 422 || !bytes.Equal(bad1.body, bad2.body) {
			t.Errorf("error replay: %d %s / %d %s", bad1.status, bad1.body, bad2.status, bad2.body)
		}

		// Keys are scoped per tenant: tenant a's k-1 is not the operator's.
		ta := e.do("POST", "/v1/tokens", e.secrets["a/tenant-admin"], `{"name":"ci","role":"tenant-member","tenant":"tenant-a"}`, "Idempotency-Key", "k-1")
		if ta.status != 201 {
			t.Errorf("tenant a with the operator's key: %d %s; want 201", ta.status, ta.body)
		}
	})
}

func TestIdempotencyConcurrent(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		op := e.secrets["operator-admin"]
		before := tenantCount(t, e)
		const n = 16
		var wg sync.WaitGroup
		out := make([]resp, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = e.do("POST", "/v1/tenants", op, `{"name":"racer"}`, "Idempotency-Key", "race")
			}()
		}
		wg.Wait()
		var created []byte
		for i, r := range out {
			switch r.status {
			case 201:
				if created == nil {
					created = r.body
				} else if !bytes.Equal(created, r.body) {
					t.Errorf("answer %d differs from the first: %s vs %s", i, r.body, created)
				}
			case 409:
				if !strings.Contains(string(r.body), "in-flight") {
					t.Errorf("answer %d: 409 without the in-flight problem type: %s", i, r.body)
				}
			default:
				t.Errorf("answer %d: %d %s", i, r.status, r.body)
			}
		}
		if created == nil {
			t.Error("no request succeeded")
		}
		if got := tenantCount(t, e) - before; got != 1 {
			t.Errorf("%d tenants created by %d concurrent requests with one key, want 1", got, n)
		}
	})
}

func TestBadInputChangesNothing(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		op := e.secrets["operator-admin"]
		huge := `{"name":"x","display_name":"` + strings.Repeat("a", 2<<20) + `"}`
		for _, tc := range []struct {
			name, method, path, body string
			status                   int
			field                    string
		}{
			{"malformed JSON", "POST", "/v1/tenants", `{"name": `, 400, "body"},
			{"not an object", "POST", "/v1/tenants", `[1,2]`, 422, "body"},
			{"wrong type", "POST", "/v1/tenants", `{"name": 42}`, 422, "body.name"},
			{"unknown field", "POST", "/v1/tenants", `{"name":"ok-name","colour":"red"}`, 422, "body.colour"},
			{"missing field", "POST", "/v1/tenants", `{}`, 422, "body.name"},
			{"rule violation", "POST", "/v1/tenants", `{"name":"Not Valid"}`, 422, "body.name"},
			{"huge body", "POST", "/v1/tenants", huge, 413, ""},
			{"empty body", "POST", "/v1/tenants", ``, 400, ""},
			{"bad role", "POST", "/v1/tokens", `{"name":"x1","role":"root"}`, 422, "body.role"},
			{"agent role", "POST", "/v1/tokens", `{"name":"x1","role":"agent"}`, 422, "body.role"},
			{"tenant role without tenant", "POST", "/v1/tokens", `{"name":"x1","role":"tenant-admin"}`, 422, "body.tenant"},
			{"operator role with tenant", "POST", "/v1/tokens", `{"name":"x1","role":"operator-viewer","tenant":"tenant-a"}`, 422, "body.tenant"},
			{"bad limit", "GET", "/v1/tenants?limit=5000", ``, 422, "query.limit"},
			{"bad cursor", "GET", "/v1/tenants?cursor=!!!", ``, 422, "query.cursor"},
			{"bad instant", "GET", "/v1/audit?since=yesterday", ``, 422, "query.since"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := e.state()
				r := e.do(tc.method, tc.path, op, tc.body)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %.300s", r.status, tc.status, r.body)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q, want application/problem+json", ct)
				}
				if tc.field != "" && !strings.Contains(string(r.body), `"location":"`+tc.field) {
					t.Errorf("problem does not name field %s: %.300s", tc.field, r.body)
				}
				if after := e.state(); after != before {
					t.Errorf("bad input changed state")
				}
			})
		}
	})
}

func TestRevocationTakesEffectOnNextRequest(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		sec := e.secrets["a/tenant-member"]
		if r := e.do("GET", "/v1/me", sec, nil); r.status != 200 {
			t.Fatalf("before revoke: %d", r.status)
		}
		if r := e.do("DELETE", "/v1/tokens/"+e.tokIDs["a/tenant-member"], e.secrets["a/tenant-admin"], nil); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		if r := e.do("GET", "/v1/me", sec, nil); r.status != 401 {
			t.Errorf("after revoke: %d, want 401", r.status)
		}
		if r := e.do("DELETE", "/v1/tokens/"+e.tokIDs["a/tenant-member"], e.secrets["a/tenant-admin"], nil); r.status != 409 || r.json(t)["current_state"] != "revoked" {
			t.Errorf("second revoke: %d %s, want 409 naming state revoked", r.status, r.body)
		}
	})
}

func TestPublicPaths(t *testing.T) {
	e := newEnv(t, testdb.SQLite(t))
	e.do("GET", "/v1/tenants/tenant-a", e.secrets["a/tenant-admin"], nil)
	for _, tc := range []struct {
		path, contains string
	}{
		{"/healthz", `"ok"`},
		{"/readyz", `"ready"`},
		{"/openapi.json", `"openapi":"3.1`},
		{"/metrics", "go_goroutines"},
		{"/metrics", "process_resident_memory_bytes"},
		{"/metrics", `neocloud_http_requests_total{code="200",method="GET",operation="get-tenant"}`},
	} {
		r := e.do("GET", tc.path, "", nil)
		if r.status != 200 || !strings.Contains(string(r.body), tc.contains) {
			t.Errorf("GET %s: %d, want 200 containing %q", tc.path, r.status, tc.contains)
		}
	}
	m := string(e.do("GET", "/metrics", "", nil).body)
	for _, id := range []string{e.a.ID, e.b.ID, "tenant-a"} {
		if strings.Contains(m, id) {
			t.Errorf("/metrics mentions tenant %s", id)
		}
	}
	for _, p := range []string{"/v1/tenants", "/v1/me", "/v1/nothing-here"} {
		if r := e.do("GET", p, "", nil); r.status != 401 {
			t.Errorf("GET %s without token: %d, want 401", p, r.status)
		}
		if r := e.do("GET", p, "nct_wrong", nil); r.status != 401 {
			t.Errorf("GET %s with a bad token: %d, want 401", p, r.status)
		}
	}
}

func TestAuditVisibility(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		op := e.secrets["operator-admin"]
		// The operator acts on tenant a's objects and on tenant b's.
		ra := e.do("POST", "/v1/tokens", op, `{"name":"for-a","role":"tenant-member","tenant":"tenant-a"}`)
		rb := e.do("POST", "/v1/tokens", op, `{"name":"for-b","role":"tenant-member","tenant":"tenant-b"}`)
		if ra.status != 201 || rb.status != 201 {
			t.Fatalf("setup: %d %d", ra.status, rb.status)
		}
		idA, idB := ra.json(t)["id"].(string), rb.json(t)["id"].(string)
		list := string(e.do("GET", "/v1/audit?limit=1000", e.secrets["a/tenant-admin"], nil).body)
		if !strings.Contains(list, idA) {
			t.Error("tenant-admin of a does not see the operator's action on its token")
		}
		if strings.Contains(list, idB) {
			t.Error("tenant-admin of a sees an action on tenant b's token")
		}
		// Even naming tenant b explicitly shows nothing of b.
		if l := string(e.do("GET", "/v1/audit?tenant="+e.b.ID, e.secrets["a/tenant-admin"], nil).body); strings.Contains(l, idB) {
			t.Error("tenant-admin of a reads tenant b's records via ?tenant=")
		}
		// No record ever holds a secret.
		for _, sec := range e.secrets {
			if strings.Contains(string(e.do("GET", "/v1/audit?limit=1000", op, nil).body), sec) {
				t.Error("an audit record holds a token secret")
			}
		}
		v := e.do("GET", "/v1/audit/verify", op, nil).json(t)
		if v["ok"] != true {
			t.Errorf("verify: %v", v)
		}
	})
}

func TestListPagination(t *testing.T) {
	e := newEnv(t, testdb.SQLite(t))
	op := e.secrets["operator-admin"]
	for i := 0; i < 5; i++ {
		if r := e.do("POST", "/v1/tenants", op, fmt.Sprintf(`{"name":"page-%d"}`, i)); r.status != 201 {
			t.Fatal(r.status)
		}
	}
	var names []string
	path := "/v1/tenants?limit=3"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		m := e.do("GET", path, op, nil).json(t)
		for _, it := range m["items"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		c, _ := m["next_cursor"].(string)
		if c == "" {
			break
		}
		path = "/v1/tenants?limit=3&cursor=" + c
	}
	want := []string{"tenant-a", "tenant-b", "page-0", "page-1", "page-2", "page-3", "page-4"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("paged names (-want +got):\n%s", diff)
	}
}

func TestTenantAdminGrantsOnlyTenantRoles(t *testing.T) {
	e := newEnv(t, testdb.SQLite(t))
	ta := e.secrets["a/tenant-admin"]
	if r := e.do("POST", "/v1/tokens", ta, `{"name":"sneaky","role":"operator-admin"}`); r.status != 403 {
		t.Errorf("tenant-admin granting operator-admin: %d %s, want 403", r.status, r.body)
	}
	r := e.do("POST", "/v1/tokens", ta, `{"name":"helper","role":"tenant-member"}`)
	if r.status != 201 || r.json(t)["tenant_id"] != e.a.ID {
		t.Errorf("tenant-admin granting a member of its own tenant (tenant implied): %d %s", r.status, r.body)
	}
}

// FuzzCreateTenantBody sends arbitrary bodies: never a 5xx, never a change
// unless the answer is 201.
func FuzzCreateTenantBody(f *testing.F) {
	for _, s := range []string{`{"name":"ok-name"}`, `{"name": `, `[]`, `{"name":1}`, `{"name":"a","x":1}`, "\x00"} {
		f.Add(s)
	}
	db := testdb.SQLite(f)
	ts := tenant.NewService(db)
	fl := fleet.NewService(db, db)
	if err := fl.Load(context.Background()); err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Tenants: ts, Fleet: fl, Audit: db, Idempotency: db.Idempotency(), Tx: db, Ping: db.Ping}).Handler())
	defer srv.Close()
	boot, err := ts.Bootstrap(context.Background(), "")
	if err != nil {
		f.Fatal(err)
	}
	secret := boot.Secret
	count := func() (n int) {
		db.RawDB().QueryRow(`SELECT COUNT(*) FROM tenants`).Scan(&n)
		return n
	}
	f.Fuzz(func(t *testing.T, body string) {
		before := count()
		req, _ := http.NewRequest("POST", srv.URL+"/v1/tenants", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode >= 500 {
			t.Fatalf("body %q: status %d", body, res.StatusCode)
		}
		if res.StatusCode != 201 && count() != before {
			t.Fatalf("body %q: answered %d but changed state", body, res.StatusCode)
		}
	})
}
