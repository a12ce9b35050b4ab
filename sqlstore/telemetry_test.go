package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"

	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
)

// TestTelemetryJournal checks SQLite's telemetry journal against a plain
// model: random batches of samples (repeats within and across batches,
// reports older than a node's window) and minute rollups, some rolled back,
// with folds of every size and reopenings of the store in the middle of a
// fold. Every batch must say exactly which samples are new; the tables
// must hold each new sample once, as first sent, and every committed
// minute merged; a rolled-back batch changes nothing.
func TestTelemetryJournal(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), fmt.Sprintf("tel-%d.db", time.Now().UnixNano()))
		db, err := Open(ctx, path)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { db.Close() }()
		nodes := []string{"node_tel0", "node_tel1", "node_tel2", "node_tel3"}
		if err := addNodes(ctx, db, nodes...); err != nil {
			rt.Fatal(err)
		}
		tune := func() {
			db.tel.foldAt = rapid.IntRange(1, 100).Draw(rt, "foldAt")
			db.tel.foldMin = rapid.IntRange(0, 3).Draw(rt, "foldMin")
			db.tel.foldPer = rapid.IntRange(0, 2).Draw(rt, "foldPer")
			db.tel.settleSlice = rapid.IntRange(1, 50).Draw(rt, "settleSlice")
			db.tel.foldAge = time.Hour
		}
		tune()

		stored := map[string]map[int64]agents.Sample{}
		minutes := map[nodeMinute]agents.Minute{}
		for _, n := range nodes {
			stored[n] = map[int64]agents.Sample{}
		}
		for step := range rapid.IntRange(1, 40).Draw(rt, "steps") {
			switch rapid.IntRange(0, 9).Draw(rt, "op") {
			case 0: // reopen, perhaps in the middle of a fold
				if err := db.Close(); err != nil {
					rt.Fatal(err)
				}
				if db, err = Open(ctx, path); err != nil {
					rt.Fatal(err)
				}
				tune()
			case 1: // read back, with the journal as it is or folded first
				if rapid.Bool().Draw(rt, "settle") {
					if err := db.tel.settle(ctx, db); err != nil {
						rt.Fatal(err)
					}
				}
				from := rapid.Int64Range(0, 700).Draw(rt, "from")
				to := from + rapid.Int64Range(0, 700).Draw(rt, "span")
				mfrom := t0.Add(time.Duration(rapid.IntRange(0, 16).Draw(rt, "mfrom")) * time.Minute)
				mto := mfrom.Add(time.Duration(rapid.IntRange(0, 16).Draw(rt, "mspan")) * time.Minute)
				for _, n := range nodes {
					got, err := db.Samples(ctx, n, from, to)
					if err != nil {
						rt.Fatal(err)
					}
					var want []agents.Sample
					for _, s := range stored[n] {
						if s.Seq >= from && s.Seq <= to {
							want = append(want, s)
						}
					}
					slices.SortFunc(want, func(a, b agents.Sample) int { return int(a.Seq - b.Seq) })
					if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
						rt.Fatalf("step %d: samples of %s (-want +got):\n%s", step, n, diff)
					}
					gm, err := db.Minutes(ctx, n, mfrom, mto)
					if err != nil {
						rt.Fatal(err)
					}
					var wm []agents.Minute
					for k, m := range minutes {
						if k.node == n && !m.Minute.Before(mfrom) && m.Minute.Before(mto) {
							wm = append(wm, m)
						}
					}
					slices.SortFunc(wm, func(a, b agents.Minute) int { return a.Minute.Compare(b.Minute) })
					for i := range wm {
						wm[i].Averages()
					}
					if diff := cmp.Diff(wm, gm, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
						rt.Fatalf("step %d: minutes of %s (-want +got):\n%s", step, n, diff)
					}
				}
			default: // a batch, committed or rolled back
				var ss []agents.Sample
				for range rapid.OneOf(rapid.IntRange(1, 8), rapid.IntRange(30, 60)).Draw(rt, "samples") {
					n := nodes[rapid.IntRange(0, len(nodes)-1).Draw(rt, "node")]
					seq := rapid.OneOf(rapid.Int64Range(1, 12), rapid.Int64Range(1, 700)).Draw(rt, "seq")
					ss = append(ss, agents.Sample{NodeID: n, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second),
						EnergyJ: uint64(seq*100 + int64(step)), PowerW: float64(step)})
				}
				var ms []agents.Minute
				for range rapid.OneOf(rapid.IntRange(0, 3), rapid.IntRange(30, 50)).Draw(rt, "minutes") {
					v := float64(rapid.IntRange(0, 9).Draw(rt, "v"))
					ms = append(ms, agents.Minute{NodeID: nodes[rapid.IntRange(0, len(nodes)-1).Draw(rt, "mnode")],
						Minute: t0.Add(time.Duration(rapid.IntRange(0, 15).Draw(rt, "minute")) * time.Minute), Samples: 1,
						EnergyFirstJ: uint64(100 * v), EnergyLastJ: uint64(100*v + 50), PowerSumW: v, PowerMaxW: v, TempMaxC: 40 + v, UtilSum: 2 * v})
				}
				commit := rapid.IntRange(0, 4).Draw(rt, "commit") > 0
				var fresh []bool
				err := db.InTx(ctx, func(ctx context.Context) error {
					var err error
					if fresh, err = db.PutSamples(ctx, ss); err != nil {
						return err
					}
					if len(ms) > 0 {
						if err := db.PutMinutes(ctx, ms); err != nil {
							return err
						}
					}
					if !commit {
						return errRollback
					}
					return nil
				})
				if commit && err != nil || !commit && !errors.Is(err, errRollback) {
					rt.Fatal(err)
				}
				seen := map[nodeSeq]bool{}
				for i, s := range ss {
					_, had := stored[s.NodeID][s.Seq]
					k := nodeSeq{s.NodeID, s.Seq}
					if want := !had && !seen[k]; fresh[i] != want {
						rt.Fatalf("step %d: sample %d (%s seq %d): fresh %v, want %v", step, i, s.NodeID, s.Seq, fresh[i], want)
					}
					seen[k] = true
					if commit && fresh[i] {
						stored[s.NodeID][s.Seq] = s
					}
				}
				if commit {
					for _, m := range ms {
						k := nodeMinute{m.NodeID, m.Minute.UnixMicro()}
						if cur, ok := minutes[k]; ok {
							mergeMinute(&cur, m)
							minutes[k] = cur
						} else {
							minutes[k] = m
						}
					}
				}
			}
		}
	})
}

var errRollback = errors.New("rolled back on purpose")

// t0 is when the telemetry tests' reports start.
var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// openWithNodes opens a fresh SQLite store, closed when t ends, with
// nodes of these ids.
func openWithNodes(t *testing.T, ids ...string) *DB {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "tel.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := addNodes(ctx, db, ids...); err != nil {
		t.Fatal(err)
	}
	return db
}

// addNodes adds a site of one rack with nodes of these ids (telemetry
// refers to its node).
func addNodes(ctx context.Context, db *DB, ids ...string) error {
	if err := db.PutSKUs(ctx, fleet.Catalog); err != nil {
		return err
	}
	site := fleet.Site{ID: "site_tel", Name: "lab", Levels: []string{"rack"}, CreatedAt: t0, UpdatedAt: t0}
	if err := db.PutSite(ctx, site); err != nil {
		return err
	}
	var ns []fleet.Node
	for _, id := range ids {
		ns = append(ns, fleet.Node{ID: id, Hostname: id, SiteID: site.ID, SKU: fleet.Catalog[0].Name, Domain: "r1", Lifecycle: fleet.LifecycleAvailable, Health: fleet.HealthOK, Version: 1, CreatedAt: t0, UpdatedAt: t0})
	}
	return db.InsertNodes(ctx, ns)
}

// putReports commits samples and their minute rollups in one
// transaction, as a group commit of heartbeats does.
func putReports(ctx context.Context, db *DB, ss []agents.Sample, ms []agents.Minute) error {
	return db.InTx(ctx, func(ctx context.Context) error {
		if _, err := db.PutSamples(ctx, ss); err != nil {
			return err
		}
		return db.PutMinutes(ctx, ms)
	})
}

// countRows returns what a query counting rows says.
func countRows(t testing.TB, db *DB, q string) int {
	t.Helper()
	var n int
	if err := db.RawDB().QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type nodeSeq struct {
	node string
	seq  int64
}

// TestSeqWindow checks the window's bits against a set, across shifts of
// every size.
func TestSeqWindow(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		base := rapid.Int64Range(1, 1000).Draw(rt, "base")
		w := seqWindow{hi: base - 1, base: base}
		set := map[int64]bool{}
		for range rapid.IntRange(1, 100).Draw(rt, "adds") {
			seq := rapid.Int64Range(max(1, w.hi-300), w.hi+rapid.Int64Range(1, 300).Draw(rt, "jump")).Draw(rt, "seq")
			w.add(seq)
			set[seq] = true
			for q := max(1, w.hi-400); q <= w.hi+2; q++ {
				stored, known := w.has(q)
				wantKnown := q > w.hi || (q >= base && w.hi-q < seqWindowLen)
				if known != wantKnown || (known && stored != set[q]) {
					rt.Fatalf("after adding %d (hi %d): seq %d: stored %v known %v; want known %v, in set %v", seq, w.hi, q, stored, known, wantKnown, set[q])
				}
			}
		}
	})
}

// TestFoldStatements checks that the fold's statements write foldRows rows
// each.
func TestFoldStatements(t *testing.T) {
	for q, cols := range map[string]int{insertRunsSQL: 6, upsertMinutesSQL: 9} {
		if n := strings.Count(q, "?"); n != cols*foldRows {
			t.Errorf("%d placeholders, want %d: %s", n, cols*foldRows, q)
		}
	}
}

// TestFoldInBackground checks that a due fold is read in the background
// and written by the commits that follow, with no read of the tables to
// force it: the journal empties and the tables fill on their own.
func TestFoldInBackground(t *testing.T) {
	ctx := context.Background()
	node := fleet.Node{ID: "node_bg"}
	db := openWithNodes(t, node.ID)
	db.tel.mu.Lock()
	db.tel.foldAt, db.tel.foldMin, db.tel.foldPer = 10, 2, 0
	db.tel.mu.Unlock()
	seq := int64(0)
	put := func() {
		seq++
		if err := db.InTx(ctx, func(ctx context.Context) error {
			_, err := db.PutSamples(ctx, []agents.Sample{{NodeID: node.ID, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second), EnergyJ: uint64(seq)}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		put()
	}
	// The tenth commit found a fold due: its plan is read in the background
	// and written two samples a commit.
	deadline := time.Now().Add(10 * time.Second)
	for countRows(t, db, `SELECT COUNT(*) FROM telemetry_journal WHERE id <= 10`) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the first ten journal rows are still there; %d samples folded", countRows(t, db, `SELECT COALESCE(SUM(samples), 0) FROM node_sample_runs`))
		}
		put()
		time.Sleep(time.Millisecond)
	}
	if n := len(storedRuns(t, db, node.ID, 1, 10)); n != 10 {
		t.Errorf("%d of the first ten samples are in node_sample_runs once their journal rows are gone", n)
	}
}

// TestFoldPlansInTurn: plans read in the background one after another
// (each into the slices of the last) fold every sample and minute once.
func TestFoldPlansInTurn(t *testing.T) {
	ctx := context.Background()
	nodes := []string{"node_turn0", "node_turn1", "node_turn2"}
	db := openWithNodes(t, nodes...)
	db.tel.mu.Lock()
	db.tel.foldAt, db.tel.foldMin, db.tel.foldPer = 6, 1, 1
	db.tel.mu.Unlock()
	plans, last := 0, (*foldPlan)(nil)
	seq := int64(0)
	for deadline := time.Now().Add(20 * time.Second); plans < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("%d plans folded in 20 s", plans)
		}
		seq++
		if err := db.InTx(ctx, func(ctx context.Context) error {
			var ss []agents.Sample
			var ms []agents.Minute
			for _, n := range nodes {
				at := t0.Add(time.Duration(seq) * time.Second)
				ss = append(ss, agents.Sample{NodeID: n, Seq: seq, At: at, EnergyJ: uint64(seq)})
				ms = append(ms, agents.Minute{NodeID: n, Minute: at.Truncate(time.Minute), Samples: 1, EnergyFirstJ: uint64(seq), EnergyLastJ: uint64(seq), PowerSumW: 1})
			}
			if _, err := db.PutSamples(ctx, ss); err != nil {
				return err
			}
			return db.PutMinutes(ctx, ms)
		}); err != nil {
			t.Fatal(err)
		}
		db.tel.mu.Lock()
		if sp := db.tel.spare; sp != nil && sp != last {
			plans, last = plans+1, sp // a plan was folded to its end
		}
		db.tel.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	for _, n := range nodes {
		ss, err := db.Samples(ctx, n, 0, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(ss)) != seq {
			t.Errorf("%s: %d samples, want %d", n, len(ss), seq)
		}
		ms, err := db.Minutes(ctx, n, t0, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var count int64
		var power float64
		for _, m := range ms {
			count += m.Samples
			power += m.PowerSumW
		}
		if count != seq || power != float64(seq) {
			t.Errorf("%s: minutes count %d reports (power sum %g), want %d", n, count, power, seq)
		}
	}
}

// TestJournalEncoding checks that a journal row decodes to what was
// written, and that every row cut short is an error, never a value.
func TestJournalEncoding(t *testing.T) {
	at := time.Date(2026, 11, 1, 0, 0, 12, 345000, time.UTC)
	s := agents.Sample{NodeID: "node_x", Seq: 1 << 40, At: at, EnergyJ: 1<<63 + 5, PowerW: 512.25}
	m := agents.Minute{NodeID: "node_x", Minute: at.Truncate(time.Minute), Samples: 6, EnergyFirstJ: 10, EnergyLastJ: 1 << 50, PowerSumW: 3000.5, PowerMaxW: 700, TempMaxC: 81.5, UtilSum: 540}
	for _, c := range []struct {
		b    []byte
		read func([]byte) (any, []byte, error)
		want any
	}{
		{appendSample(nil, s), func(b []byte) (any, []byte, error) { return readSample(b, nil) }, s},
		{appendMinute(nil, m), func(b []byte) (any, []byte, error) { return readMinute(b, nil) }, m},
	} {
		got, rest, err := c.read(append(c.b, 0xff))
		if err != nil || len(rest) != 1 || !cmp.Equal(got, c.want) {
			t.Errorf("decoded %+v (rest %v, %v), want %+v", got, rest, err, c.want)
		}
		for n := range len(c.b) {
			if _, _, err := c.read(c.b[:n]); !errors.Is(err, errJournal) {
				t.Errorf("%d of %d bytes: %v, want errJournal", n, len(c.b), err)
			}
		}
	}
}

// storedRuns returns what node_sample_runs holds of a node's samples from
// sequence number from to to, as it is, without a fold first.
func storedRuns(t *testing.T, db *DB, node string, from, to int64) []agents.Sample {
	t.Helper()
	var out []agents.Sample
	rows, err := db.RawDB().Query(`SELECT data FROM node_sample_runs WHERE node_id = ?`, node)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		run, err := readRun(node, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range run {
			if s.Seq >= from && s.Seq <= to {
				out = append(out, s)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return bySeq(out)
}

// TestSampleRunsMerge: a run whose key a stored run has already (the same
// node and highest sequence number) is merged into it, and a read returns
// each sequence number once, in order, as first stored.
func TestSampleRunsMerge(t *testing.T) {
	ctx := context.Background()
	const node = "node_merge"
	db := openWithNodes(t, node)
	s := func(seq int64, power float64) agents.Sample {
		return agents.Sample{NodeID: node, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second), EnergyJ: uint64(seq * 10), PowerW: power}
	}
	for _, run := range [][]agents.Sample{{s(2, 1), s(5, 1)}, {s(1, 2), s(2, 2), s(5, 2)}} {
		if err := db.InTx(ctx, func(ctx context.Context) error { return db.foldSamples(ctx, run) }); err != nil {
			t.Fatal(err)
		}
	}
	var runs, samples, first int
	if err := db.RawDB().QueryRow(`SELECT COUNT(*), SUM(samples), MIN(first_seq) FROM node_sample_runs`).Scan(&runs, &samples, &first); err != nil {
		t.Fatal(err)
	}
	if runs != 1 || samples != 5 || first != 1 {
		t.Errorf("%d runs of %d samples from %d, want 1 of 5 from 1", runs, samples, first)
	}
	want := []agents.Sample{s(1, 2), s(2, 1), s(5, 1)}
	if diff := cmp.Diff(want, storedRuns(t, db, node, 0, 10), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[1:2], storedRuns(t, db, node, 2, 4), cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("samples 2 to 4 (-want +got):\n%s", diff)
	}
}

// TestSettleInSlices: a settle folds the journal a slice a transaction,
// so that commits go on between the slices (a fold under way is seen from
// outside, in telemetry_fold), and leaves every sample and minute
// committed before it in the tables.
func TestSettleInSlices(t *testing.T) {
	ctx := context.Background()
	const nodesN, beats = 200, 3
	nodes := make([]string, nodesN)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node_slice%03d", i)
	}
	db := openWithNodes(t, nodes...)
	db.tel.mu.Lock()
	db.tel.settleSlice = 1 // a node a transaction
	db.tel.mu.Unlock()
	for seq := int64(1); seq <= beats; seq++ {
		var ss []agents.Sample
		var ms []agents.Minute
		for _, n := range nodes {
			ss = append(ss, agents.Sample{NodeID: n, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second), EnergyJ: uint64(seq)})
			ms = append(ms, agents.Minute{NodeID: n, Minute: t0, Samples: 1, EnergyFirstJ: uint64(seq), EnergyLastJ: uint64(seq)})
		}
		if err := putReports(ctx, db, ss, ms); err != nil {
			t.Fatal(err)
		}
	}
	settled := make(chan error, 1)
	go func() { settled <- db.tel.settle(ctx, db) }()
	seen := false
	for done := false; !done; {
		select {
		case err := <-settled:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
			seen = seen || countRows(t, db, `SELECT COUNT(*) FROM telemetry_fold`) > 0
		}
	}
	if !seen {
		t.Errorf("no fold under way was seen while the journal was settled: it folded in one transaction")
	}
	for _, n := range nodes {
		if ss := storedRuns(t, db, n, 1, beats); len(ss) != beats {
			t.Fatalf("%s: %d samples in node_sample_runs, want %d", n, len(ss), beats)
		}
		var samples int
		if err := db.RawDB().QueryRow(`SELECT samples FROM node_minutes WHERE node_id = ? AND minute = ?`, n, micros(t0)).Scan(&samples); err != nil || samples != beats {
			t.Fatalf("%s: node_minutes says %d samples (%v), want %d", n, samples, err, beats)
		}
	}
	if left := countRows(t, db, `SELECT COUNT(*) FROM telemetry_journal`); left != 0 {
		t.Errorf("%d journal rows left after the settle", left)
	}
}

// TestNextTransactionAwaitsOutcome checks that a transaction does not use
// the journal's memory before the last one to use it is known to have
// committed. A context cancelled within a transaction has database/sql
// roll it back at once and give the connection to the next one, whose
// heartbeat repeats a sample of the first; the first's commit then fails.
// Had the second trusted memory, it would have taken the sample for
// stored and acknowledged it unwritten.
func TestNextTransactionAwaitsOutcome(t *testing.T) {
	bg := context.Background()
	const node = "node_outcome"
	db := openWithNodes(t, node)
	sample := func(seq int64) []agents.Sample {
		return []agents.Sample{{NodeID: node, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second), EnergyJ: uint64(seq)}}
	}
	if _, err := db.PutSamples(bg, sample(1)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		fresh []bool
		err   error
	}
	second := make(chan result, 1)
	early := false
	ctx, cancel := context.WithCancel(bg)
	err := db.InTx(ctx, func(ctx context.Context) error {
		if _, err := db.PutSamples(ctx, sample(2)); err != nil {
			return err
		}
		cancel()
		go func() {
			fresh, err := db.PutSamples(bg, sample(2))
			second <- result{fresh, err}
		}()
		select {
		case r := <-second:
			early = true
			second <- r
		case <-time.After(300 * time.Millisecond):
		}
		return nil
	})
	if err == nil {
		t.Fatal("the cancelled transaction committed")
	}
	r := <-second
	if r.err != nil {
		t.Fatal(r.err)
	}
	if early {
		t.Errorf("the next transaction wrote heartbeats before the last one's outcome was known")
	}
	if len(r.fresh) != 1 || !r.fresh[0] {
		t.Errorf("the repeated sample, rolled back the first time, was taken for stored: fresh %v", r.fresh)
	}
	ss, err := db.Samples(bg, node, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 {
		t.Errorf("stored %+v, want seq 1 and 2", ss)
	}
}

// TestNodeReadLeavesJournal: a read of a node's samples and minutes
// returns what the journal holds of it without folding the journal (a
// fold takes the writer for about a second at a site's cadence), and
// nothing of another node's.
func TestNodeReadLeavesJournal(t *testing.T) {
	ctx := context.Background()
	nodes := []string{"node_read0", "node_read1"}
	db := openWithNodes(t, nodes...)
	for seq := int64(1); seq <= 3; seq++ {
		var ss []agents.Sample
		var ms []agents.Minute
		for i, n := range nodes {
			ss = append(ss, agents.Sample{NodeID: n, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second), EnergyJ: uint64(100*i) + uint64(seq), PowerW: float64(i)})
			ms = append(ms, agents.Minute{NodeID: n, Minute: t0, Samples: 1, EnergyFirstJ: uint64(seq), EnergyLastJ: uint64(seq), PowerSumW: float64(10 * i)})
		}
		if err := putReports(ctx, db, ss, ms); err != nil {
			t.Fatal(err)
		}
	}
	journaled := countRows(t, db, `SELECT COUNT(*) FROM telemetry_journal`)
	ss, err := db.Samples(ctx, nodes[1], 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 || ss[0].Seq != 2 || ss[1].Seq != 3 || ss[1].EnergyJ != 103 || ss[1].PowerW != 1 || ss[0].NodeID != nodes[1] {
		t.Errorf("samples 2 and 3 of %s: %+v", nodes[1], ss)
	}
	ms, err := db.Minutes(ctx, nodes[1], t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Samples != 3 || ms[0].EnergyFirstJ != 1 || ms[0].EnergyLastJ != 3 || ms[0].PowerAvgW != 10 {
		t.Errorf("minutes of %s: %+v", nodes[1], ms)
	}
	if n := countRows(t, db, `SELECT COUNT(*) FROM telemetry_journal`); n != journaled || journaled != 6 {
		t.Errorf("%d journal rows after the reads, %d before, want 6 and 6", n, journaled)
	}
	if n := countRows(t, db, `SELECT COUNT(*) FROM node_sample_runs`) + countRows(t, db, `SELECT COUNT(*) FROM node_minutes`); n != 0 {
		t.Errorf("the reads folded %d rows into the tables", n)
	}
}
