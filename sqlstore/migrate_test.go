package sqlstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud/agents"
)

// TestKeyedTelemetryMigration stores samples and minute rollups under the
// schema before migration 0029 and checks that every row is still there,
// as it was, once 0029 has rebuilt both tables keyed and 0030 has made the
// samples runs, and that a row must still name a known node.
func TestKeyedTelemetryMigration(t *testing.T) {
	ctx := context.Background()
	db := openThrough(t, 28, "node_m1", "node_m2")
	var ss []agents.Sample
	var ms []agents.Minute
	for i, n := range []string{"node_m2", "node_m1"} {
		for seq := int64(1); seq <= 3; seq++ {
			at := t0.Add(time.Duration(seq*10+int64(i)) * time.Second)
			s := agents.Sample{NodeID: n, Seq: seq, At: at, EnergyJ: uint64(1000*seq + int64(i)), PowerW: 700.5 + float64(seq)}
			if _, err := db.exec(ctx, insertSampleSQL, s.NodeID, s.Seq, micros(s.At), int64(s.EnergyJ), s.PowerW); err != nil {
				t.Fatal(err)
			}
			ss = append(ss, s)
		}
		m := agents.Minute{NodeID: n, Minute: t0, Samples: 3, EnergyFirstJ: 1000, EnergyLastJ: 3000, PowerSumW: 2107.5, PowerMaxW: 703.5, TempMaxC: 61, UtilSum: 290}
		if _, err := db.exec(ctx, upsertMinuteSQL, m.NodeID, micros(m.Minute), m.Samples, int64(m.EnergyFirstJ), int64(m.EnergyLastJ), m.PowerSumW, m.PowerMaxW, m.TempMaxC, m.UtilSum); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}

	if err := db.migrateThrough(ctx, 29); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RawDB().Exec(`SELECT rowid FROM node_samples`); err == nil {
		t.Errorf("node_samples still has a rowid after 0029")
	}
	if _, err := db.exec(ctx, insertSampleSQL, "node_unknown", 1, micros(t0), 1, 1.0); err == nil {
		t.Errorf("a sample of an unknown node was stored after 0029")
	}
	// 0030 makes the rows runs, one per node, and drops the table.
	if err := db.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RawDB().Exec(`SELECT 1 FROM node_samples`); err == nil {
		t.Errorf("node_samples is still there after 0030")
	}
	var runs, samples int
	if err := db.RawDB().QueryRow(`SELECT COUNT(*), SUM(samples) FROM node_sample_runs`).Scan(&runs, &samples); err != nil {
		t.Fatal(err)
	}
	if runs != 2 || samples != 6 {
		t.Errorf("node_sample_runs has %d runs of %d samples after 0030, want 2 of 6", runs, samples)
	}
	equalTimes := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
	for i, n := range []string{"node_m2", "node_m1"} {
		got, err := db.Samples(ctx, n, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ss[3*i:3*i+3], got, equalTimes); diff != "" {
			t.Errorf("samples of %s after 0030 (-before +after):\n%s", n, diff)
		}
		gm, err := db.Minutes(ctx, n, t0, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for j := range gm {
			gm[j].PowerAvgW, gm[j].UtilAvgPct = 0, 0
		}
		if diff := cmp.Diff(ms[i:i+1], gm, equalTimes); diff != "" {
			t.Errorf("minutes of %s after 0029 (-before +after):\n%s", n, diff)
		}
	}
	if _, err := db.exec(ctx, insertRunSQL, "node_unknown", 1, 1, 1, micros(t0), appendRunSample(nil, agents.Sample{Seq: 1, At: t0})); err == nil {
		t.Errorf("a run of an unknown node was stored after 0030")
	}
}

// TestSampleRunBytes stores the same samples, ten a node in each of six
// folds, as a row each (node_samples, before 0030) and as runs, and checks
// that runs take at most seven tenths of the bytes: what 0030 is for, with
// fewer rows to write. It logs both (dbstat's page sizes).
func TestSampleRunBytes(t *testing.T) {
	ctx := context.Background()
	var ids []string
	for i := range 2500 {
		ids = append(ids, fmt.Sprintf("node_%06d", i))
	}
	fold := func(k int) []agents.Sample { // by node, then sequence number
		var ss []agents.Sample
		for _, id := range ids {
			for s := 1; s <= 10; s++ {
				seq := int64(k*10 + s)
				ss = append(ss, agents.Sample{NodeID: id, Seq: seq, At: t0.Add(time.Duration(seq) * 10 * time.Second), EnergyJ: uint64(seq) * 56000, PowerW: 5600.25 + float64(seq%7)})
			}
		}
		return ss
	}
	bytes := func(db *DB, table string) int64 {
		var n int64
		if err := db.RawDB().QueryRow(`SELECT SUM(pgsize) FROM dbstat WHERE name = ?`, table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	rows := openThrough(t, 29, ids...)
	runs := openWithNodes(t, ids...)
	samples := 0
	for k := range 6 {
		ss := fold(k)
		samples += len(ss)
		if err := rows.InTx(ctx, func(ctx context.Context) error {
			for _, s := range ss {
				if _, err := rows.exec(ctx, insertSampleSQL, s.NodeID, s.Seq, micros(s.At), int64(s.EnergyJ), s.PowerW); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := runs.InTx(ctx, func(ctx context.Context) error { return runs.foldSamples(ctx, ss) }); err != nil {
			t.Fatal(err)
		}
	}
	r, n := bytes(rows, "node_samples"), bytes(runs, "node_sample_runs")
	t.Logf("%d samples: %.1f bytes a sample as rows, %.1f in runs of ten", samples, float64(r)/float64(samples), float64(n)/float64(samples))
	if 10*n > 7*r {
		t.Errorf("runs take %d bytes, rows %d: more than seven tenths", n, r)
	}
}

// openThrough opens a fresh SQLite store, closed when t ends, migrated
// through version, with nodes of these ids.
func openThrough(t *testing.T, version int, ids ...string) *DB {
	t.Helper()
	ctx := context.Background()
	db, err := openSQLite(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.migrateThrough(ctx, version); err != nil {
		t.Fatal(err)
	}
	if err := addNodes(ctx, db, ids...); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestBreakFixStateMigration: requests stored before 0031 get the state
// their columns imply — a report open unless confirmed, the other kinds
// done — and read back with it.
func TestBreakFixStateMigration(t *testing.T) {
	ctx := context.Background()
	db := openThrough(t, 30, "node_b1")
	confirmed := t0.Add(time.Hour)
	for _, r := range []struct {
		id, kind  string
		confirmed *time.Time
	}{{"bfx_1", "report", nil}, {"bfx_2", "report", &confirmed}, {"bfx_3", "reboot", nil}, {"bfx_4", "replace", nil}} {
		body := fmt.Sprintf(`{"id":%q,"node_id":"node_b1","kind":%q,"created_by":"tok_a","created_at":"2026-01-01T00:00:00Z"}`, r.id, r.kind)
		if _, err := db.exec(ctx, `INSERT INTO break_fix (id, node_id, tenant_id, kind, created_by, created_at, confirmed_at, body) VALUES (?, 'node_b1', 'tnt_a', ?, 'tok_a', ?, ?, ?)`,
			r.id, r.kind, micros(t0), closedMicros(r.confirmed), body); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, id := range []string{"bfx_1", "bfx_2", "bfx_3", "bfx_4"} {
		b, err := db.BreakFix(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got[id] = b.State
	}
	want := map[string]string{"bfx_1": "open", "bfx_2": "confirmed", "bfx_3": "done", "bfx_4": "done"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("states after 0031 (-want +got):\n%s", d)
	}
	if _, err := db.exec(ctx, `UPDATE break_fix SET state = 'lost' WHERE id = 'bfx_1'`); err == nil {
		t.Errorf("a state outside the four was stored")
	}
}

// TestOneNodeCredentialMigration: a node with two live agent credentials
// before 0032 keeps the newer; after it, a second live credential for a
// node is refused, while one after a revocation (a re-key) is taken.
func TestOneNodeCredentialMigration(t *testing.T) {
	ctx := context.Background()
	db := openThrough(t, 31, "node_c1", "node_c2")
	for _, tk := range []struct{ id, node string }{{"tok_01", "node_c1"}, {"tok_02", "node_c1"}, {"tok_03", "node_c2"}} {
		if _, err := db.exec(ctx, `INSERT INTO tokens (id, name, role, node_id, hash, hint, created_at, created_by) VALUES (?, 'agent', 'agent', ?, ?, 'h', ?, 'test')`,
			tk.id, tk.node, "hash_"+tk.id, micros(t0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	live := func(node string) []string {
		var ids []string
		rows, err := db.RawDB().Query(`SELECT id FROM tokens WHERE node_id = ? AND revoked_at IS NULL ORDER BY id`, node)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		return ids
	}
	if got := live("node_c1"); len(got) != 1 || got[0] != "tok_02" {
		t.Errorf("node_c1's live credentials after 0032: %v, want tok_02", got)
	}
	if got := live("node_c2"); len(got) != 1 || got[0] != "tok_03" {
		t.Errorf("node_c2's live credentials after 0032: %v, want tok_03", got)
	}
	insert := func(id string) error {
		_, err := db.exec(ctx, `INSERT INTO tokens (id, name, role, node_id, hash, hint, created_at, created_by) VALUES (?, 'agent', 'agent', 'node_c2', ?, 'h', ?, 'test')`,
			id, "hash_"+id, micros(t0))
		return err
	}
	if err := insert("tok_04"); err == nil {
		t.Error("a second live credential for node_c2 was stored")
	}
	if _, err := db.exec(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = 'tok_03'`, micros(t0)); err != nil {
		t.Fatal(err)
	}
	if err := insert("tok_05"); err != nil {
		t.Errorf("a credential after the revocation: %v", err)
	}
}
