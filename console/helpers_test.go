package console_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

var (
	opP     = neocloud.Principal{TokenID: "test", Role: neocloud.RoleOperatorAdmin}
	h100, _ = fleet.CatalogSKU("h100-sxm5-80gb")
)

// testServer is a server on a store in dir, its lifecycle driven by the
// test on a clock the test moves.
type testServer struct {
	*cli.Running
	mu  sync.Mutex
	now time.Time
}

func start(tb testing.TB, dir string) *testServer {
	tb.Helper()
	s := &testServer{now: time.Now().UTC()}
	r, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DataDir: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), NoLifecycle: true, SampleEvery: time.Hour, Now: s.clock})
	if err != nil {
		tb.Fatal(err)
	}
	s.Running = r
	return s
}

// startAt starts a server on a fresh store with its clock at at, stopped
// when the test ends.
func startAt(t *testing.T, at time.Time) *testServer {
	t.Helper()
	s := start(t, filepath.Join(t.TempDir(), "data"))
	t.Cleanup(func() { s.Close() })
	s.mu.Lock()
	s.now = at
	s.mu.Unlock()
	return s
}

// acme creates the tenant acme and a tenant-admin token of it; it returns
// the tenant and the token's secret.
func (s *testServer) acme(t *testing.T) (tenant.Tenant, string) {
	t.Helper()
	ctx := context.Background()
	tn, err := s.Tenants.Create(ctx, tenant.CreateInput{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := s.Tenants.CreateToken(ctx, opP, tenant.CreateTokenInput{Name: "acme-admin", Role: neocloud.RoleTenantAdmin, Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	return tn, secret
}

func (s *testServer) clock() time.Time { s.mu.Lock(); defer s.mu.Unlock(); return s.now }

// apply generates a site and applies it.
func (s *testServer) apply(tb testing.TB, o fleet.GenerateOptions) {
	tb.Helper()
	var spec bytes.Buffer
	if _, err := fleet.Generate(&spec, o); err != nil {
		tb.Fatal(err)
	}
	parsed, err := fleet.ParseSpec(spec.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Fleet.Apply(context.Background(), parsed); err != nil {
		tb.Fatal(err)
	}
}

// runUntilActive runs the lifecycle a minute of the clock at a time until
// n reservations are active.
func (s *testServer) runUntilActive(tb testing.TB, n int) {
	tb.Helper()
	ctx := context.Background()
	for i := 0; ; i++ {
		if _, err := s.Sales.Step(ctx); err != nil {
			tb.Fatal(err)
		}
		rs, err := s.Sales.Reservations(ctx, opP, sales.ReservationFilter{State: sales.ReservationActive}, neocloud.Page{Limit: n + 1})
		if err != nil {
			tb.Fatal(err)
		}
		if len(rs) >= n {
			return
		}
		if i > 1000 {
			tb.Fatalf("%d of %d reservations active after 1,000 minutes", len(rs), n)
		}
		s.advance(time.Minute)
	}
}

// advance moves the clock on.
func (s *testServer) advance(d time.Duration) {
	s.mu.Lock()
	s.now = s.now.Add(d)
	s.mu.Unlock()
}
