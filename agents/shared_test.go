package agents_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
	"github.com/neocloud/neocloud/wire"
)

// TestJoinThroughAnotherServer: with two servers on one PostgreSQL
// database, a site applied through one a moment ago takes a join token
// and its agents' joins through the other, before that one's periodic
// sync has run. A lone server (no sharing) reads nothing again: there the
// same join is refused.
func TestJoinThroughAnotherServer(t *testing.T) {
	url := testdb.PostgresURL(t)
	ctx := context.Background()
	server := func(shared time.Duration) (*fleet.Service, *agents.Service) {
		db, err := sqlstore.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fl := fleet.NewService(db, db)
		if err := fl.Load(ctx); err != nil {
			t.Fatal(err)
		}
		ag := agents.NewService(db, db, fl, tenant.NewService(db))
		ag.SharedTTL = shared
		return fl, ag
	}
	applier, applied := server(10 * time.Second)
	_, other := server(10 * time.Second)
	_, another := server(10 * time.Second)
	_, lone := server(0)

	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	if _, err := fleet.Generate(&spec, fleet.GenerateOptions{Site: "lab", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: 2 * 8,
		Levels: []string{"rack"}, Fanout: []int{1}}); err != nil {
		t.Fatal(err)
	}
	parsed, err := fleet.ParseSpec(spec.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := applier.Apply(ctx, parsed); err != nil {
		t.Fatal(err)
	}
	op := neocloud.Principal{TokenID: "tok_op", Role: neocloud.RoleOperatorAdmin}
	if _, _, err := lone.CreateJoinToken(ctx, op, agents.JoinTokenInput{Site: "lab", MaxUses: 2, TTLS: 3600}); neocloud.ErrorKind(err) != neocloud.KindInvalid {
		t.Fatalf("a lone server's join token for a site it never loaded: %v, want invalid", err)
	}
	if _, _, err := another.CreateJoinToken(ctx, op, agents.JoinTokenInput{Site: "lab", MaxUses: 2, TTLS: 3600}); err != nil {
		t.Fatalf("a join token through another server: %v", err)
	}
	_, secret, err := applied.CreateJoinToken(ctx, op, agents.JoinTokenInput{Site: "lab", MaxUses: 2, TTLS: 3600})
	if err != nil {
		t.Fatal(err)
	}
	n := parsed.Nodes[0]
	join := wire.JoinRequest{Version: wire.Version, Hostname: n.Hostname, Serial: n.Serial}
	if _, err := lone.Join(ctx, secret, join); neocloud.ErrorKind(err) != neocloud.KindInvalid {
		t.Fatalf("a join through a lone server that never loaded the node: %v, want invalid", err)
	}
	res, err := other.Join(ctx, secret, join)
	if err != nil || res.NodeID == "" {
		t.Fatalf("a join through the other server: %+v, %v", res, err)
	}
}
