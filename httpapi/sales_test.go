package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud/httpapi"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
)

// sse reads Server-Sent Events from a stream until want have arrived or
// the deadline passes.
func sse(t *testing.T, url, secret, lastID string, want int) []sales.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+secret)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	var out []sales.Event
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && len(out) < want {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var e sales.Event
			if err := json.Unmarshal([]byte(d), &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
	}
	return out
}

func TestEventsStreamOwnTenantAndResume(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		// Events written while a follower waits reach it: a's fixture
		// reservation was scheduled; the new one is scheduled, then its
		// allocation and itself are bound.
		got := make(chan []sales.Event, 1)
		go func() { got <- sse(t, e.url, e.secrets["a/tenant-member"], "", 4) }()
		time.Sleep(200 * time.Millisecond)
		for _, who := range []string{"a/tenant-admin", "b/tenant-admin"} {
			if r := e.do("POST", "/v1/reservations", e.secrets[who], map[string]any{"sku": "h100-sxm5-80gb", "gpus": 8, "class": "on_demand"}); r.status != 201 {
				t.Fatalf("reserve: %d %s", r.status, r.body)
			}
		}
		evs := <-got
		if len(evs) < 4 {
			t.Fatalf("the follower got %d events, want 4", len(evs))
		}
		for i, ev := range evs {
			if ev.TenantID != e.a.ID {
				t.Fatalf("tenant a's stream carries an event of %s: %+v", ev.TenantID, ev)
			}
			if i > 0 && ev.Seq <= evs[i-1].Seq {
				t.Fatalf("events out of order: %d after %d", ev.Seq, evs[i-1].Seq)
			}
		}
		// Resume after the second: only later events come.
		rest := sse(t, e.url, e.secrets["a/tenant-member"], itoa(evs[1].Seq), 2)
		if len(rest) != 2 || rest[0].Seq != evs[2].Seq {
			t.Fatalf("resumed after %d, got %+v", evs[1].Seq, rest)
		}
		// The JSON list is the same events, paged by seq.
		r := e.do("GET", "/v1/events?limit=2", e.secrets["a/tenant-member"], nil)
		var page struct {
			Items      []sales.Event `json:"items"`
			NextCursor string        `json:"next_cursor"`
		}
		json.Unmarshal(r.body, &page)
		if r.status != 200 || len(page.Items) != 2 || page.NextCursor != itoa(page.Items[1].Seq) || page.Items[0].TenantID != e.a.ID {
			t.Fatalf("event list: %d %s", r.status, r.body)
		}
		if r := e.do("GET", "/v1/events?after=x", e.secrets["a/tenant-member"], nil); r.status != 422 || !strings.Contains(string(r.body), "after") {
			t.Fatalf("bad cursor: %d %s", r.status, r.body)
		}
	})
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestRateLimitAnswers429(t *testing.T) {
	e := newEnv(t, testdb.SQLite(t))
	api := httpapi.New(httpapi.Config{Tenants: e.tenants, Fleet: e.fleet, Sales: e.sales, Audit: e.db, Idempotency: e.db.Idempotency(), Tx: e.db, Ping: e.db.Ping,
		RateLimit: 1, RateBurst: 3})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	e.url = srv.URL
	sec := e.secrets["a/tenant-admin"]
	for i := 0; i < 3; i++ {
		if r := e.do("GET", "/v1/me", sec, nil); r.status != 200 {
			t.Fatalf("request %d within the burst: %d", i, r.status)
		}
	}
	before := e.auditCount()
	r := e.do("GET", "/v1/me", sec, nil)
	if r.status != 429 || r.header.Get("Retry-After") != "1" || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.body), "rate-limited") {
		t.Fatalf("over the rate: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if e.auditCount() != before+1 {
		t.Fatal("a rate-limited request left no audit record")
	}
	// Another token has its own bucket.
	if r := e.do("GET", "/v1/me", e.secrets["b/tenant-admin"], nil); r.status != 200 {
		t.Fatalf("another token: %d", r.status)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := e.do("GET", "/v1/me", sec, nil); r.status != 200 {
		t.Fatalf("after waiting: %d", r.status)
	}
}

func TestReservationTopologyAndExtension(t *testing.T) {
	e := newEnv(t, testdb.SQLite(t))
	sec := e.secrets["a/tenant-admin"]
	r := e.do("POST", "/v1/reservations", sec, map[string]any{"sku": "h100-sxm5-80gb", "gpus": 24, "class": "on_demand", "within": "rack"})
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var rsv sales.Reservation
	json.Unmarshal(r.body, &rsv)
	slurm := e.do("GET", "/v1/reservations/"+rsv.ID+"/topology?format=slurm", sec, nil)
	body := string(slurm.body)
	if slurm.status != 200 || !strings.HasPrefix(slurm.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("slurm: %d %s", slurm.status, body)
	}
	rack := strings.ReplaceAll(rsv.Nodes[0].Domain, "/", "-")
	if !strings.Contains(body, "SwitchName="+rack+" Nodes=") || !strings.Contains(body, rsv.Nodes[2].Hostname) || !strings.Contains(body, "Switches="+rack) {
		t.Fatalf("topology.conf lacks the rack switch or its nodes:\n%s", body)
	}
	k8s := string(e.do("GET", "/v1/reservations/"+rsv.ID+"/topology?format=k8s", sec, nil).body)
	if n := strings.Count(k8s, "kubectl label node "); n != 3 || !strings.Contains(k8s, "topology.neocloud.io/rack="+rack) {
		t.Fatalf("k8s labels:\n%s", k8s)
	}
	if r := e.do("GET", "/v1/reservations/"+rsv.ID+"/topology?format=xml", sec, nil); r.status != 422 {
		t.Fatalf("unknown format: %d", r.status)
	}
	// On-demand has no end to extend; a reserved one blocked after its end
	// fails with how far the same nodes allow.
	if r := e.do("POST", "/v1/reservations/"+rsv.ID+"/extend", sec, map[string]any{"end": time.Now().Add(48 * time.Hour)}); r.status != 422 {
		t.Fatalf("extend on-demand: %d %s", r.status, r.body)
	}
	fixture := e.rsv["a"]
	blockStart := fixture.Shape.End.Add(3 * time.Hour)
	// Fill the whole site right after the fixture's end (with turnaround).
	r = e.do("POST", "/v1/reservations", e.secrets["b/tenant-admin"], map[string]any{"sku": "h100-sxm5-80gb", "gpus": 8 * 40, "class": "reserved", "start": blockStart, "duration_s": 86400})
	if r.status != 201 {
		t.Fatalf("blocker: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/reservations/"+fixture.ID+"/extend", sec, map[string]any{"end": fixture.Shape.End.Add(24 * time.Hour)})
	if r.status != 409 || !strings.Contains(string(r.body), "free only until") {
		t.Fatalf("extend into taken nodes: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/v1/reservations/"+fixture.ID+"/extend", sec, map[string]any{"end": fixture.Shape.End.Add(time.Hour)})
	if r.status != 200 {
		t.Fatalf("extend within the free hour: %d %s", r.status, r.body)
	}
}
