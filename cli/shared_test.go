package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

// TestServersShareOnePostgres: replicas started together on one empty
// PostgreSQL database all start with the same bootstrap secret; a site
// applied through one, and a cordon made through another, reach every
// server's fleet (what each one lists, places on and judges) within a few
// of their syncs.
func TestServersShareOnePostgres(t *testing.T) {
	url := testdb.PostgresURL(t)
	const secret = "operator-chosen-secret-0002"
	const replicas = 3
	srvs := make([]*cli.Running, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			srvs[i], errs[i] = cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DatabaseURL: url, Bootstrap: secret,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		})
	}
	wg.Wait()
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d of %d started together: %v", i, replicas, errs[i])
		}
		t.Cleanup(func() { srvs[i].Close() })
	}
	a, b, c := srvs[0], srvs[1], srvs[2]

	path := filepath.Join(t.TempDir(), "site.yaml")
	if _, errOut, code := run(t, a.URL, secret, "fleet", "generate", "--gpus", "32", "--out", path); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := run(t, a.URL, secret, "fleet", "apply", "-f", path); code != 0 {
		t.Fatalf("fleet apply through the first server: %q", errOut)
	}
	nodes := func(srv *cli.Running) []map[string]any {
		out, _, _ := run(t, srv.URL, secret, "node", "list", "-o", "json")
		var ns []map[string]any
		json.Unmarshal([]byte(out), &ns)
		return ns
	}
	// eventually waits for every server's fleet to satisfy ok, for up to
	// ten of their syncs.
	eventually := func(what string, ok func(ns []map[string]any) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * cli.FleetSyncEvery)
		for _, srv := range srvs {
			for !ok(nodes(srv)) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s still lists %v", what, srv.URL, nodes(srv))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	eventually("the applied site's 4 nodes", func(ns []map[string]any) bool { return len(ns) == 4 })
	host := nodes(c)[2]["hostname"].(string)
	if _, errOut, code := run(t, b.URL, secret, "node", "cordon", host); code != 0 {
		t.Fatalf("node cordon through the second server: %q", errOut)
	}
	eventually("the cordon", func(ns []map[string]any) bool {
		for _, n := range ns {
			if n["hostname"] == host {
				return n["cordoned"] == true
			}
		}
		return false
	})
}

// TestLifecycleLeaseSaysWhoSteps: the server that takes the lifecycle
// lease says so in its log, once, and says so again when another has
// taken it over.
func TestLifecycleLeaseSaysWhoSteps(t *testing.T) {
	url := testdb.PostgresURL(t)
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var logA, logB bytes.Buffer
	a, _ := cli.LifecycleLease(db, "srv_a", slog.New(slog.NewTextHandler(&logA, nil)))
	b, _ := cli.LifecycleLease(db, "srv_b", slog.New(slog.NewTextHandler(&logB, nil)))
	lead := func(f func(context.Context) (bool, error), want bool) {
		t.Helper()
		if held, err := f(ctx); err != nil || held != want {
			t.Fatalf("lead: %v, %v; want %v", held, err, want)
		}
	}
	lead(a, true)
	lead(a, true)
	lead(b, false)
	// a stops renewing; its lease runs out.
	if _, err := db.RawDB().Exec(`UPDATE leases SET until = 0 WHERE name = 'lifecycle'`); err != nil {
		t.Fatal(err)
	}
	lead(b, true)
	lead(a, false)
	if n := strings.Count(logA.String(), "this server steps"); n != 1 || strings.Count(logA.String(), "another server steps") != 1 {
		t.Errorf("a's log:\n%s", logA.String())
	}
	if strings.Count(logB.String(), "this server steps") != 1 || strings.Contains(logB.String(), "another server") {
		t.Errorf("b's log:\n%s", logB.String())
	}
}

// TestReplicaList: every server on the database is listed, up, with the
// work it leads, by any of them; one that stops is listed stopped and
// gives its leases up, so that another takes the lifecycle over at its next
// step rather than when the lease would have run out (10 s). On SQLite the
// one server holds both.
func TestReplicaList(t *testing.T) {
	type replica struct {
		ID, State string
		Leads     []string
		This      bool
	}
	list := func(srv *cli.Running, token string) []replica {
		t.Helper()
		out, errOut, code := run(t, srv.URL, token, "replica", "list", "-o", "json")
		if code != 0 {
			t.Fatalf("replica list: %s", errOut)
		}
		var rs []replica
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	holder := func(rs []replica, lease string) (string, int) {
		var who string
		n := 0
		for _, r := range rs {
			if slices.Contains(r.Leads, lease) {
				who, n = r.ID, n+1
			}
		}
		return who, n
	}

	t.Run("sqlite", func(t *testing.T) {
		srv := startServer(t)
		rs := list(srv, srv.Token)
		if len(rs) != 1 || rs[0].State != "up" || !rs[0].This || !slices.Equal(rs[0].Leads, []string{"lifecycle", "liveness"}) {
			t.Fatalf("replicas of one server on SQLite: %+v", rs)
		}
	})

	t.Run("postgres", func(t *testing.T) {
		url := testdb.PostgresURL(t)
		const secret = "operator-chosen-secret-0003"
		srvs := make([]*cli.Running, 2)
		for i := range srvs {
			srv, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DatabaseURL: url, Bootstrap: secret,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			srvs[i] = srv
		}
		// The lifecycle lease is taken at the first step (every second).
		deadline := time.Now().Add(8 * time.Second)
		var rs []replica
		for {
			rs = list(srvs[0], secret)
			if _, n := holder(rs, "lifecycle"); n == 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(rs) != 2 || rs[0].State != "up" || rs[1].State != "up" {
			t.Fatalf("two servers' replicas: %+v", rs)
		}
		lead, n := holder(rs, "lifecycle")
		if n != 1 {
			t.Fatalf("%d replicas hold the lifecycle lease: %+v", n, rs)
		}
		ids := map[string]*cli.Running{}
		for _, srv := range srvs {
			this := 0
			for _, r := range list(srv, secret) {
				if r.This {
					this++
					ids[r.ID] = srv
				}
			}
			if this != 1 {
				t.Fatalf("%s lists %d replicas as itself", srv.URL, this)
			}
		}
		if len(ids) != 2 || ids[lead] == nil {
			t.Fatalf("replicas by id: %v; the lead %s", ids, lead)
		}
		// Its /metrics say so too, and the other's that it does not.
		const held = `neocloud_leader{loop="lifecycle"}`
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			mine, others := scrape(t, ids[lead].URL)[held], 0.0
			for id, srv := range ids {
				if id != lead {
					others += scrape(t, srv.URL)[held]
				}
			}
			if mine == 1 && others == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v at the holder, %v at the other", held, mine, others)
			}
		}
		other := srvs[0]
		if other == ids[lead] {
			other = srvs[1]
		}
		if err := ids[lead].Close(); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(8 * time.Second)
		for {
			rs = list(other, secret)
			if who, _ := holder(rs, "lifecycle"); who != "" && who != lead || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, r := range rs {
			if r.ID == lead && (r.State != "stopped" || len(r.Leads) != 0) {
				t.Fatalf("the stopped lead: %+v", r)
			}
			if r.ID != lead && !slices.Contains(r.Leads, "lifecycle") {
				t.Fatalf("the other replica did not take the lifecycle over before its lease ran out: %+v", rs)
			}
		}
	})
}
