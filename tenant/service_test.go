package tenant_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

func TestBootstrap(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := tenant.NewService(db)
		first, err := s.Bootstrap(ctx, "")
		if err != nil || !strings.HasPrefix(first.Secret, tenant.SecretPrefix) || first.Revoked {
			t.Fatalf("first start: %+v, %v; want a new secret", first, err)
		}
		if again, err := s.Bootstrap(ctx, ""); err != nil || again != (tenant.Bootstrapped{}) {
			t.Errorf("second start: %+v, %v; want nothing new while an operator-admin exists", again, err)
		}
		if p, err := s.Authenticate(ctx, first.Secret); err != nil || p.Role != neocloud.RoleOperatorAdmin {
			t.Errorf("the bootstrap secret authenticates as %+v, %v", p, err)
		}
		const chosen = "operator-chosen-0123456789"
		for i := 0; i < 2; i++ {
			if b, err := s.Bootstrap(ctx, chosen); err != nil || b != (tenant.Bootstrapped{}) {
				t.Fatalf("bootstrap with a chosen secret (start %d): %+v, %v", i, b, err)
			}
		}
		op := neocloud.Principal{Role: neocloud.RoleOperatorAdmin}
		toks, _ := s.Tokens(ctx, op, tenant.TokenFilter{}, neocloud.Page{})
		if len(toks) != 2 {
			t.Errorf("%d tokens after two starts with the same chosen secret, want 2 (generated + chosen)", len(toks))
		}
		// An operator revokes the chosen secret's token but leaves it in the
		// server's environment: the next start goes on, says so, and does
		// not bring it back.
		p, err := s.Authenticate(ctx, chosen)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Revoke(ctx, op, p.TokenID); err != nil {
			t.Fatal(err)
		}
		if b, err := s.Bootstrap(ctx, chosen); err != nil || !b.Revoked || b.Secret != "" {
			t.Errorf("start with a revoked chosen secret: %+v, %v; want it reported revoked", b, err)
		}
		if _, err := s.Authenticate(ctx, chosen); err == nil {
			t.Error("a revoked bootstrap secret signs in again after a start")
		}
		if toks, _ := s.Tokens(ctx, op, tenant.TokenFilter{IncludeRevoked: true}, neocloud.Page{}); len(toks) != 2 {
			t.Errorf("%d tokens, revoked included, after a start with a revoked secret, want still 2", len(toks))
		}
		for _, bad := range []string{"short", "has spaces in it here", "tab\tinside-0123456789", "ünïcödé-0123456789"} {
			if _, err := s.Bootstrap(ctx, bad); neocloud.ErrorKind(err) != neocloud.KindInvalid {
				t.Errorf("bootstrap secret %q: %v, want invalid", bad, err)
			}
		}
	})
}

// TestBootstrapServersStartingTogether: replicas started at once on one
// empty PostgreSQL database (each with its own connections, as servers
// have) all start, and one operator-admin token is made: with a chosen
// secret, and without one (whose new secret one server prints).
func TestBootstrapServersStartingTogether(t *testing.T) {
	const servers = 6
	for _, chosen := range []string{"operator-chosen-0123456789", ""} {
		url := testdb.PostgresURL(t)
		ctx := context.Background()
		results := make([]tenant.Bootstrapped, servers)
		errs := make([]error, servers)
		dbs := make([]*sqlstore.DB, servers)
		var wg sync.WaitGroup
		for i := range servers {
			wg.Go(func() {
				db, err := sqlstore.Open(ctx, url)
				if err != nil {
					errs[i] = err
					return
				}
				dbs[i] = db
				results[i], errs[i] = tenant.NewService(db).Bootstrap(ctx, chosen)
			})
		}
		wg.Wait()
		secrets := 0
		for i := range servers {
			if dbs[i] != nil {
				defer dbs[i].Close()
			}
			if errs[i] != nil {
				t.Errorf("chosen %q: server %d: %v", chosen, i, errs[i])
			}
			if results[i].Secret != "" {
				secrets++
			}
		}
		if dbs[0] == nil {
			t.FailNow()
		}
		toks, err := tenant.NewService(dbs[0]).Tokens(ctx, neocloud.Principal{Role: neocloud.RoleOperatorAdmin}, tenant.TokenFilter{}, neocloud.Page{})
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if chosen == "" {
			want = 1
		}
		if len(toks) != 1 || secrets != want {
			t.Errorf("chosen %q: %d tokens and %d secrets printed after %d servers started together, want 1 and %d", chosen, len(toks), secrets, servers, want)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	s := tenant.NewService(testdb.SQLite(t))
	for _, secret := range []string{"", "nct_unknown", "Bearer x"} {
		if _, err := s.Authenticate(ctx, secret); neocloud.ErrorKind(err) != neocloud.KindUnauthenticated {
			t.Errorf("Authenticate(%q) = %v, want unauthenticated", secret, err)
		}
	}
}

func TestSecretsAreUniqueAndHashed(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s := tenant.NewSecret()
		if seen[s] || len(s) != len(tenant.SecretPrefix)+43 {
			t.Fatalf("secret %q repeated or of the wrong length", s)
		}
		seen[s] = true
		if h := tenant.HashSecret(s); strings.Contains(h, s) || len(h) != 64 {
			t.Fatalf("hash %q of %q", h, s)
		}
	}
}
