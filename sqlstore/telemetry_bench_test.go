package sqlstore

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/neocloud/neocloud/agents"
)

// BenchmarkHeartbeatCommit measures what SQLite spends on heartbeats: group
// commits of benchBatch reports from a site of benchNodes nodes reporting
// in turn (a sample each, and its node's minute rollup), the journal folded
// as it fills. Run it long enough for several folds, e.g.
//
//	go test -run '^$' -bench HeartbeatCommit -benchtime 30000x ./sqlstore
//
// cpu-µs/sample is the process's CPU time (the background reading of fold
// plans included) per sample.
func BenchmarkHeartbeatCommit(b *testing.B) {
	const benchNodes, benchBatch = 25000, 40
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ids := make([]string, benchNodes)
	for i := range ids {
		ids[i] = fmt.Sprintf("node_%06d", i)
	}
	if err := addNodes(ctx, db, ids...); err != nil {
		b.Fatal(err)
	}
	next := 0 // the next report, over all nodes in turn
	batch := func() error {
		ss := make([]agents.Sample, benchBatch)
		ms := make([]agents.Minute, benchBatch)
		for i := range ss {
			node, round := ids[next%benchNodes], next/benchNodes
			at := t0.Add(time.Duration(round)*10*time.Second + time.Duration(next%benchNodes)*10*time.Second/benchNodes)
			ss[i] = agents.Sample{NodeID: node, Seq: int64(round + 1), At: at, EnergyJ: uint64(round) * 7000, PowerW: 5600}
			ms[i] = agents.Minute{NodeID: node, Minute: at.Truncate(time.Minute), Samples: 1, EnergyFirstJ: ss[i].EnergyJ, EnergyLastJ: ss[i].EnergyJ,
				PowerSumW: 5600, PowerMaxW: 5600, TempMaxC: 61, UtilSum: 97}
			next++
		}
		return putReports(ctx, db, ss, ms)
	}
	// Every node's first report: its window is read from the table once.
	for next < benchNodes {
		if err := batch(); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		if err := batch(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/1e3/float64(b.N*benchBatch), "cpu-µs/sample")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N*benchBatch), "µs/sample")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkNodeRead measures a read of one node's telemetry (its last
// minute's samples and its last hour's minutes) on a site of benchNodes
// nodes whose last minute of reports, six a node, is still in the
// journal: "journal" reads it as it is; "fold" folds it first (settle),
// as reads once did, a fresh minute each time.
//
//	go test -run '^$' -bench NodeRead -benchtime 5x ./sqlstore
func BenchmarkNodeRead(b *testing.B) {
	const benchNodes, reports, batch = 25000, 6, 250
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.tel.mu.Lock()
	db.tel.foldAt, db.tel.foldAge = 1<<30, time.Hour // no fold but the one measured
	db.tel.mu.Unlock()
	ids := make([]string, benchNodes)
	for i := range ids {
		ids[i] = fmt.Sprintf("node_%06d", i)
	}
	if err := addNodes(ctx, db, ids...); err != nil {
		b.Fatal(err)
	}
	round := 0
	minute := func() { // a minute of reports: every node's next six
		for range reports {
			round++
			at := t0.Add(time.Duration(round) * 10 * time.Second)
			for start := 0; start < benchNodes; start += batch {
				var ss []agents.Sample
				var ms []agents.Minute
				for _, id := range ids[start:min(start+batch, benchNodes)] {
					ss = append(ss, agents.Sample{NodeID: id, Seq: int64(round), At: at, EnergyJ: uint64(round) * 7000, PowerW: 5600})
					ms = append(ms, agents.Minute{NodeID: id, Minute: at.Truncate(time.Minute), Samples: 1, EnergyFirstJ: uint64(round) * 7000,
						EnergyLastJ: uint64(round) * 7000, PowerSumW: 5600, PowerMaxW: 5600, TempMaxC: 61, UtilSum: 97})
				}
				if err := putReports(ctx, db, ss, ms); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	read := func() {
		node := ids[benchNodes/2]
		ss, err := db.Samples(ctx, node, int64(round-reports+1), int64(round))
		if err != nil || len(ss) != reports {
			b.Fatalf("%d samples (%v), want %d", len(ss), err, reports)
		}
		last := t0.Add(time.Duration(round) * 10 * time.Second)
		if _, err := db.Minutes(ctx, node, last.Add(-time.Hour), last.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	minute() // every node's window read from the table once
	if err := db.tel.settle(ctx, db); err != nil {
		b.Fatal(err)
	}
	b.Run("journal", func(b *testing.B) {
		minute()
		b.ResetTimer()
		for range b.N {
			read()
		}
	})
	b.Run("fold", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			minute()
			b.StartTimer()
			if err := db.tel.settle(ctx, db); err != nil {
				b.Fatal(err)
			}
			read()
		}
	})
}
