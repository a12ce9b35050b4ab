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
		return db.InTx(ctx, func(ctx context.Context) error {
			if _, err := db.PutSamples(ctx, ss); err != nil {
				return err
			}
			return db.PutMinutes(ctx, ms)
		})
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
