package billing_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// The store keeps each allocation-month's span equal to the sum of its
// records as they are written in batches, updated (GPU count, interval,
// energy source changed) and joined by revisions (which have no span):
// what a close rates is what the records say.
func TestStoredSpansSumTheirRecords(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		tn := tenant.Tenant{ID: "ten_spans", Name: "spans", CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		if err := db.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, 9))
		var all []billing.UsageRecord
		// Eight allocations over the turn of a month, derived hour by hour
		// in batches that cut across allocations and months.
		jan := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
		for a := range 8 {
			id := fmt.Sprintf("alc_%d", a)
			ready := jan.Add(time.Duration(rng.IntN(20*3600)) * time.Second)
			release := ready.Add(time.Duration(3600+rng.IntN(30*3600)) * time.Second)
			for h := ready.Truncate(time.Hour); h.Before(release); h = h.Add(time.Hour) {
				st, en := ready, release
				if h.After(st) {
					st = h
				}
				if h.Add(time.Hour).Before(en) {
					en = h.Add(time.Hour)
				}
				secs := int64(en.Sub(st) / time.Second)
				src := billing.SourceEstimated
				if a%3 == 0 {
					src = billing.SourceNodeOOB
				}
				all = append(all, billing.UsageRecord{ID: billing.RecordID(id, h, 0), AllocationID: id, Hour: h, ReservationID: "rsv_" + id, ContractID: "ctr_1",
					TenantID: tn.ID, Class: "on_demand", SKU: "h100", SiteID: "sit_1", NodeID: "nod_" + id, Start: st, End: en, GPUs: 8, ReservationGPUs: 16,
					GPUSeconds: secs * 8, GPUEnergyJ: secs * 4000, EnergyJ: secs * 7000, EnergySource: src, DerivedAt: h.Add(time.Hour)})
			}
		}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		for i := 0; i < len(all); i += 7 {
			batch := all[i:min(len(all), i+7)]
			if err := db.InTx(ctx, func(ctx context.Context) error { return db.InsertUsageRecords(ctx, batch) }); err != nil {
				t.Fatal(err)
			}
		}
		check := func(what string) {
			t.Helper()
			got, err := db.OpenSpans(ctx, tn.ID, time.Time{}, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), true)
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
			// Inside a transaction the spans are read another way (on
			// SQLite): the same spans.
			var inTx []billing.UsageRecord
			if err := db.InTx(ctx, func(ctx context.Context) error {
				var err error
				inTx, err = db.OpenSpans(ctx, tn.ID, time.Time{}, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), true)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			sort.Slice(inTx, func(i, j int) bool { return inTx[i].ID < inTx[j].ID })
			if d := cmp.Diff(got, inTx); d != "" {
				t.Fatalf("%s: spans read in a transaction differ (-outside +inside):\n%s", what, d)
			}
			every, err := db.OpenSpansAll(ctx, []string{tn.ID}, time.Time{}, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(every[tn.ID], func(i, j int) bool { return every[tn.ID][i].ID < every[tn.ID][j].ID })
			if d := cmp.Diff(got, every[tn.ID]); d != "" {
				t.Fatalf("%s: spans read for every tenant at once differ (-one +all):\n%s", what, d)
			}
			want := billing.Spans(all)
			for i := range want { // what a span read for rating carries
				if !want[i].Tiles() { // rated from its records: no GPU-seconds read
					want[i].GPUs, want[i].GPUSeconds = -1, 0
				}
				want[i] = billing.UsageRecord{ID: want[i].ID, AllocationID: want[i].AllocationID, Hour: want[i].Hour, ReservationID: want[i].ReservationID,
					ContractID: want[i].ContractID, TenantID: want[i].TenantID, SiteID: want[i].SiteID, Start: want[i].Start, End: want[i].End,
					GPUs: want[i].GPUs, ReservationGPUs: want[i].ReservationGPUs, GPUSeconds: want[i].GPUSeconds, EnergyJ: want[i].EnergyJ, EnergySource: want[i].EnergySource, Records: want[i].Records}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("%s: stored spans differ from their records (-want +got):\n%s", what, d)
			}
			// Read for every tenant at once (a close), the same spans.
			all, err := db.OpenSpansAll(db.Committed(ctx), []string{tn.ID, "ten_none"}, time.Time{}, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(all[tn.ID], func(i, j int) bool { return all[tn.ID][i].ID < all[tn.ID][j].ID })
			if d := cmp.Diff(want, all[tn.ID]); d != "" || len(all["ten_none"]) != 0 {
				t.Fatalf("%s: spans read for all tenants differ (-want +got):\n%s", what, d)
			}
		}
		check("inserted")
		if n := len(billing.Spans(all)); n < 9 {
			t.Fatalf("only %d spans: the allocations should cross the month", n)
		}

		// Updates: more energy; fewer GPUs for one hour (the span no longer
		// tiles: rated from its records); one hour metered at the node.
		var upd []billing.UsageRecord
		for i := range all {
			r := &all[i]
			switch i % 5 {
			case 0:
				r.EnergyJ += 12345
			case 1:
				if r.AllocationID == "alc_1" {
					r.GPUs, r.GPUSeconds = 4, r.GPUSeconds/2
				}
			case 2:
				r.EnergySource = billing.SourceNodeOOB
			default:
				continue
			}
			upd = append(upd, *r)
		}
		if err := db.InTx(ctx, func(ctx context.Context) error { return db.UpdateUsageRecords(ctx, upd) }); err != nil {
			t.Fatal(err)
		}
		check("updated")
		spans, _ := db.OpenSpans(ctx, tn.ID, time.Time{}, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), true)
		tiles := 0
		for _, sp := range spans {
			if sp.Tiles() {
				tiles++
			}
		}
		if tiles == 0 || tiles == len(spans) {
			t.Fatalf("%d of %d spans tile; alc_1's should not, the others should", tiles, len(spans))
		}

		// A revision joins no span; it is open until an invoice marks it.
		rev := all[0]
		rev.Rev, rev.ID, rev.GPUSeconds, rev.EnergyJ = 1, billing.RecordID(rev.AllocationID, rev.Hour, 1), 0, 5
		if err := db.InTx(ctx, func(ctx context.Context) error { return db.InsertUsageRecords(ctx, []billing.UsageRecord{rev}) }); err != nil {
			t.Fatal(err)
		}
		check("a revision")
		revs, err := db.OpenRevisions(ctx, tn.ID, time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC))
		if err != nil || len(revs) != 1 || revs[0].ID != rev.ID {
			t.Fatalf("open revisions: %v %+v", err, revs)
		}
	})
}

// While a close holds the usage lock, a meter pass waits for it: a month's
// usage cannot change between the close reading it and closing it.
func TestMeterWaitsForTheUsageLock(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		bl := billing.NewService(db, db)
		bl.Now = func() time.Time { return time.Date(2027, 2, 1, 1, 0, 0, 0, time.UTC) }
		held, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			done <- db.InTx(ctx, func(ctx context.Context) error {
				if err := db.LockUsage(ctx); err != nil {
					return err
				}
				close(held)
				<-release
				return nil
			})
		}()
		<-held
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := bl.Meter(short, bl.Now())
		cancel()
		if err == nil {
			t.Fatal("a meter pass ran while the usage lock was held")
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, err := bl.Meter(ctx, bl.Now()); err != nil {
			t.Fatalf("the meter after the lock: %v", err)
		}
	})
}

// Energy readings read outside a transaction come in slices of time from
// parallel connections; they are the same readings a transaction reads,
// those on the slices' edges and the range's ends included.
func TestEnergyReadingsReadInSlices(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		w := newWorld(t, db, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
		nodes := w.fleet.Snapshot.Nodes(fleet.NodeFilter{}, neocloud.Page{Limit: 1000})
		from, to := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 3, 0, 0, 0, time.UTC)
		var rs []agents.EnergyReading
		rng := rand.New(rand.NewPCG(3, 5))
		for i, n := range nodes {
			for g := range 8 {
				// Every microsecond edge of up to 8 slices, and random times.
				at := from.Add(to.Sub(from) * time.Duration(i%9) / 8)
				if i%2 == 1 {
					at = from.Add(time.Duration(rng.Int64N(int64(to.Sub(from)))) - time.Minute)
				}
				rs = append(rs, agents.EnergyReading{NodeID: n.ID, GPU: g, At: at.Truncate(time.Microsecond), EnergyJ: uint64(i*8 + g), Reason: "hourly"})
			}
		}
		if err := db.PutEnergyReadings(ctx, rs); err != nil {
			t.Fatal(err)
		}
		var want []agents.EnergyReading
		if err := db.InTx(ctx, func(ctx context.Context) error {
			var err error
			want, err = db.EnergyReadingsAt(ctx, from, to)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		got, err := db.EnergyReadingsAt(ctx, from, to)
		if err != nil {
			t.Fatal(err)
		}
		inside := 0
		for _, r := range rs {
			if !r.At.Before(from) && r.At.Before(to) {
				inside++
			}
		}
		if len(want) != inside || inside < len(rs)/2 {
			t.Fatalf("in a transaction: %d readings, want %d of %d", len(want), inside, len(rs))
		}
		key := func(rs []agents.EnergyReading) []agents.EnergyReading {
			sort.Slice(rs, func(i, j int) bool { return rs[i].EnergyJ < rs[j].EnergyJ })
			return rs
		}
		if d := cmp.Diff(key(want), key(got)); d != "" {
			t.Fatalf("read in slices differs (-in a transaction +in slices):\n%s", d)
		}
	})
}
