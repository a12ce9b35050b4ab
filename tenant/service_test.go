package tenant_test

import (
	"context"
	"strings"
	"testing"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/tenant"
)

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	db := testdb.SQLite(t)
	s := tenant.NewService(db)
	first, err := s.Bootstrap(ctx, "")
	if err != nil || !strings.HasPrefix(first, tenant.SecretPrefix) {
		t.Fatalf("first start: %q, %v; want a new secret", first, err)
	}
	if again, err := s.Bootstrap(ctx, ""); err != nil || again != "" {
		t.Errorf("second start: %q, %v; want nothing new while an operator-admin exists", again, err)
	}
	if p, err := s.Authenticate(ctx, first); err != nil || p.Role != neocloud.RoleOperatorAdmin {
		t.Errorf("the bootstrap secret authenticates as %+v, %v", p, err)
	}
	const chosen = "operator-chosen-0123456789"
	for i := 0; i < 2; i++ {
		if sec, err := s.Bootstrap(ctx, chosen); err != nil || sec != "" {
			t.Fatalf("bootstrap with a chosen secret (start %d): %q, %v", i, sec, err)
		}
	}
	toks, _ := s.Tokens(ctx, neocloud.Principal{Role: neocloud.RoleOperatorAdmin}, tenant.TokenFilter{}, neocloud.Page{})
	if len(toks) != 2 {
		t.Errorf("%d tokens after two starts with the same chosen secret, want 2 (generated + chosen)", len(toks))
	}
	for _, bad := range []string{"short", "has spaces in it here", "tab\tinside-0123456789", "ünïcödé-0123456789"} {
		if _, err := s.Bootstrap(ctx, bad); neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Errorf("bootstrap secret %q: %v, want invalid", bad, err)
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
