package sqlstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/audit"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

var t0 = time.Date(2027, 1, 4, 0, 0, 0, 123456000, time.UTC)

func TestTenants(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		want := tenant.Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: "acme", DisplayName: "Acme", CreatedAt: t0}
		if err := db.CreateTenant(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := db.Tenant(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Tenant (-want +got):\n%s", diff)
		}
		if got, _ := db.TenantByName(ctx, "acme"); got.ID != want.ID {
			t.Errorf("TenantByName = %q, want %q", got.ID, want.ID)
		}
		dup := want
		dup.ID = neocloud.NewID(neocloud.PrefixTenant)
		if err := db.CreateTenant(ctx, dup); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Errorf("duplicate name: err = %v, want conflict", err)
		}
		if _, err := db.Tenant(ctx, "tnt_missing"); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Errorf("missing: err = %v, want not found", err)
		}
	})
}

func TestTenantsPagination(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		var ids []string
		for i := 0; i < 7; i++ {
			tn := tenant.Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: fmt.Sprintf("t%d", i), CreatedAt: t0}
			if err := db.CreateTenant(ctx, tn); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tn.ID)
		}
		var got []string
		cursor := ""
		for {
			page, err := db.Tenants(ctx, tenant.TenantFilter{}, neocloud.Page{Cursor: cursor, Limit: 3})
			if err != nil {
				t.Fatal(err)
			}
			for _, tn := range page {
				got = append(got, tn.ID)
			}
			if len(page) < 3 {
				break
			}
			cursor = neocloud.EncodeCursor(page[len(page)-1].ID)
		}
		if diff := cmp.Diff(ids, got); diff != "" {
			t.Errorf("pages (-want +got):\n%s", diff)
		}
	})
}

func TestTokens(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		tn := tenant.Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: "acme", CreatedAt: t0}
		if err := db.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		tok := tenant.Token{ID: neocloud.NewID(neocloud.PrefixToken), Name: "ci", Role: neocloud.RoleTenantAdmin, TenantID: tn.ID, Hint: "nct_abcd…", CreatedAt: t0, CreatedBy: "tok_x"}
		if err := db.CreateToken(ctx, tok, "hash-1"); err != nil {
			t.Fatal(err)
		}
		got, err := db.TokenByHash(ctx, "hash-1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tok, got); diff != "" {
			t.Errorf("TokenByHash (-want +got):\n%s", diff)
		}
		if err := db.RevokeToken(ctx, tok.ID, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.TokenByHash(ctx, "hash-1"); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Errorf("revoked token still authenticates: %v", err)
		}
		if err := db.RevokeToken(ctx, tok.ID, t0); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Errorf("second revoke: %v, want conflict", err)
		}
		// The schema itself refuses a tenant role without a tenant.
		bad := tenant.Token{ID: neocloud.NewID(neocloud.PrefixToken), Name: "bad", Role: neocloud.RoleTenantMember, Hint: "x", CreatedAt: t0}
		if err := db.CreateToken(ctx, bad, "hash-2"); neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Errorf("tenant role without tenant: err = %v, want invalid (check constraint)", err)
		}
		// And a token for a missing tenant (foreign key).
		bad.TenantID = "tnt_missing"
		if err := db.CreateToken(ctx, bad, "hash-3"); neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Errorf("token for missing tenant: err = %v, want invalid (foreign key)", err)
		}
		// Same hash twice is refused.
		tok2 := tok
		tok2.ID = neocloud.NewID(neocloud.PrefixToken)
		if err := db.CreateToken(ctx, tok2, "hash-1"); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Errorf("duplicate hash: err = %v, want conflict", err)
		}
	})
}

func appendN(t *testing.T, db *sqlstore.DB, n int, tenantID string) {
	t.Helper()
	for i := 0; i < n; i++ {
		_, err := db.AppendAudit(context.Background(), audit.Record{ID: neocloud.NewID(neocloud.PrefixAudit), At: t0.Add(time.Duration(i) * time.Second),
			Actor: "tok_a", ActorRole: "operator-admin", Tenant: tenantID, Action: "create-tenant", Status: 201, Result: audit.ResultOK, RequestID: "req_x", Source: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuditChain(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		appendN(t, db, 5, "tnt_a")
		appendN(t, db, 3, "tnt_b")
		v, err := audit.Verify(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if !v.OK || v.Records != 8 {
			t.Fatalf("Verify = %+v, want ok over 8 records", v)
		}
		recs, err := db.Audit(ctx, audit.Filter{Tenant: "tnt_b"}, neocloud.Page{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 3 || recs[0].Seq != 8 {
			t.Errorf("tenant filter: %d records, first seq %d; want 3 newest first", len(recs), recs[0].Seq)
		}
		// The database refuses UPDATE and DELETE on the audit table.
		if _, err := testdb.Raw(db).Exec(`UPDATE audit SET actor = 'someone' WHERE seq = 2`); err == nil {
			t.Error("UPDATE of an audit record succeeded; want it refused")
		}
		if _, err := testdb.Raw(db).Exec(`DELETE FROM audit WHERE seq = 8`); err == nil {
			t.Error("DELETE of an audit record succeeded; want it refused")
		}
	})
}

// TestAuditTamperDetected flips one byte of a stored record (going around the
// append-only triggers, as an attacker with file access would) and expects
// verification to name that record.
func TestAuditTamperDetected(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		appendN(t, db, 6, "tnt_a")
		raw := testdb.Raw(db)
		var disable, enable []string
		if db.Dialect == sqlstore.Postgres {
			disable, enable = []string{`ALTER TABLE audit DISABLE TRIGGER audit_no_update`}, nil
		} else {
			disable = []string{`DROP TRIGGER audit_no_update`}
		}
		for _, q := range disable {
			if _, err := raw.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		// 'tok_a' → 'tok_b': one byte.
		if _, err := raw.Exec(`UPDATE audit SET actor = 'tok_b' WHERE seq = 4`); err != nil {
			t.Fatal(err)
		}
		for _, q := range enable {
			raw.Exec(q)
		}
		v, err := audit.Verify(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if v.OK || v.FirstBadSeq != 4 {
			t.Errorf("Verify = %+v, want broken at seq 4", v)
		}
	})
}

func TestAuditConcurrentAppendsKeepOneChain(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				appendN(t, db, 20, "tnt_a")
			}()
		}
		wg.Wait()
		v, err := audit.Verify(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		if !v.OK || v.Records != 160 {
			t.Errorf("Verify = %+v, want ok over 160 records", v)
		}
	})
}

func TestIdempotencyStore(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		s := db.Idempotency()
		e, claimed, err := s.Claim(ctx, "operator", "k1", "h1", t0, time.Minute)
		if err != nil || !claimed {
			t.Fatalf("first claim: claimed=%v err=%v", claimed, err)
		}
		e, claimed, err = s.Claim(ctx, "operator", "k1", "h1", t0.Add(time.Second), time.Minute)
		if err != nil || claimed || e.Done {
			t.Fatalf("second claim while in flight: claimed=%v done=%v err=%v", claimed, e.Done, err)
		}
		// Another scope has its own keys.
		if _, claimed, _ := s.Claim(ctx, "tnt_a", "k1", "h9", t0, time.Minute); !claimed {
			t.Error("same key in another scope was not claimable")
		}
		if err := s.Finish(ctx, "operator", "k1", 201, "application/json", []byte(`{"id":"x"}`)); err != nil {
			t.Fatal(err)
		}
		e, claimed, err = s.Claim(ctx, "operator", "k1", "h1", t0.Add(time.Hour), time.Minute)
		if err != nil || claimed {
			t.Fatalf("claim after finish: claimed=%v err=%v", claimed, err)
		}
		want := struct {
			Done   bool
			Status int
			Body   string
		}{true, 201, `{"id":"x"}`}
		if diff := cmp.Diff(want, struct {
			Done   bool
			Status int
			Body   string
		}{e.Done, e.Status, string(e.Body)}); diff != "" {
			t.Errorf("stored response (-want +got):\n%s", diff)
		}
		// An abandoned claim is taken over after its lease.
		s.Claim(ctx, "operator", "k2", "h2", t0, time.Minute)
		if _, claimed, _ := s.Claim(ctx, "operator", "k2", "h2", t0.Add(time.Hour), time.Minute); !claimed {
			t.Error("expired in-flight claim was not taken over")
		}
		// Release lets a retry claim again at once.
		if err := s.Release(ctx, "operator", "k2"); err != nil {
			t.Fatal(err)
		}
		if _, claimed, _ := s.Claim(ctx, "operator", "k2", "h2", t0.Add(time.Hour), time.Minute); !claimed {
			t.Error("released key was not claimable")
		}
		// k1 in both scopes was created at t0; k2 was claimed anew an hour later.
		n, err := s.Purge(ctx, t0.Add(time.Minute))
		if err != nil || n != 2 {
			t.Errorf("Purge = %d, %v; want 2 keys", n, err)
		}
	})
}

func TestMigrationsConcurrentStart(t *testing.T) {
	url := testdb.PostgresURL(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := sqlstore.Open(context.Background(), url)
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent start: %v", err)
		}
	}
}

func TestInTxRollsBack(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		boom := fmt.Errorf("boom")
		err := db.InTx(ctx, func(ctx context.Context) error {
			if err := db.CreateTenant(ctx, tenant.Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: "gone", CreatedAt: t0}); err != nil {
				return err
			}
			return boom
		})
		if err != boom {
			t.Fatalf("InTx = %v, want boom", err)
		}
		if _, err := db.TenantByName(ctx, "gone"); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Errorf("tenant survived a rolled-back transaction: %v", err)
		}
	})
}

// TestLeases: a lease is held until it expires; a new holder gets a new
// epoch, and the old one's fence fails.
func TestLeases(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		t0 := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
		take := func(who string, now time.Time) (int64, bool) {
			t.Helper()
			e, ok, err := db.TakeLease(ctx, "liveness", who, now, now.Add(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			return e, ok
		}
		holds := func(who string, epoch int64, now time.Time) bool {
			t.Helper()
			var held bool
			err := db.InTx(ctx, func(ctx context.Context) error {
				var err error
				held, err = db.HoldsLease(ctx, "liveness", who, epoch, now)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return held
		}
		ea, ok := take("a", t0)
		if !ok {
			t.Fatal("a did not get a free lease")
		}
		if _, ok := take("b", t0.Add(10*time.Second)); ok {
			t.Fatal("b took a's lease before it expired")
		}
		if e, ok := take("a", t0.Add(20*time.Second)); !ok || e != ea {
			t.Fatalf("a's renewal: %d %v (epoch was %d)", e, ok, ea)
		}
		eb, ok := take("b", t0.Add(51*time.Second))
		if !ok || eb != ea+1 {
			t.Fatalf("b after expiry: %d %v", eb, ok)
		}
		if holds("a", ea, t0.Add(52*time.Second)) || !holds("b", eb, t0.Add(52*time.Second)) {
			t.Fatal("the fence lets the old holder write, or not the new one")
		}
	})
}

// A close outside a transaction reads every tenant's spans in one pass
// (PostgreSQL) or tenant by tenant in parallel (SQLite): the spans are
// those read in a transaction, none lost or read twice.
func TestSpansReadInOnePass(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		var ids []string
		for n := range 3 {
			tn := tenant.Tenant{ID: fmt.Sprintf("ten_pass%d", n), Name: fmt.Sprintf("pass%d", n), CreatedAt: t0}
			if err := db.CreateTenant(ctx, tn); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tn.ID)
		}
		month := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		var rs []billing.UsageRecord
		for a := range 3000 {
			id := fmt.Sprintf("alc_%05d", a)
			h := month.Add(time.Duration(a%700) * time.Hour)
			rs = append(rs, billing.UsageRecord{ID: billing.RecordID(id, h, 0), AllocationID: id, Hour: h, ReservationID: "rsv_" + id, ContractID: "ctr_1",
				TenantID: ids[a%3], Class: "on_demand", SKU: "h100", SiteID: "sit_1", NodeID: "nod_1", Start: h, End: h.Add(time.Hour), GPUs: 8, ReservationGPUs: 8,
				GPUSeconds: 8 * 3600, EnergyJ: int64(a), EnergySource: billing.SourceEstimated, DerivedAt: h.Add(time.Hour)})
		}
		if err := db.InTx(ctx, func(ctx context.Context) error { return db.InsertUsageRecords(ctx, rs) }); err != nil {
			t.Fatal(err)
		}
		var want map[string][]billing.UsageRecord
		if err := db.InTx(ctx, func(ctx context.Context) error {
			var err error
			want, err = db.OpenSpansAll(ctx, ids, month, month.AddDate(0, 1, 0))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		got, err := db.OpenSpansAll(ctx, ids, month, month.AddDate(0, 1, 0))
		if err != nil {
			t.Fatal(err)
		}
		byID := func(m map[string][]billing.UsageRecord) map[string][]billing.UsageRecord {
			for _, rs := range m {
				slices.SortFunc(rs, func(a, b billing.UsageRecord) int { return strings.Compare(a.ID, b.ID) })
			}
			return m
		}
		if n := len(want[ids[0]]) + len(want[ids[1]]) + len(want[ids[2]]); n != 3000 {
			t.Fatalf("%d spans read in a transaction, want 3000", n)
		}
		if d := cmp.Diff(byID(want), byID(got)); d != "" {
			t.Fatalf("spans read in one pass differ (-in a transaction +one pass):\n%s", d)
		}
	})
}
