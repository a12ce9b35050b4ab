package placementbench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/neocloud/neocloud/placement"
	"testing"
	"time"
)

// TestRunSmall runs the whole benchmark on a small fleet: every case and
// quality row must come out.
func TestRunSmall(t *testing.T) {
	var out stringsBuilder
	if err := Run(&out, Options{GPUs: 8 * 2048, Samples: 200, StreamFor: 200 * time.Millisecond, Calendar: 300, Running: 200}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1. one 8-GPU node", "3. 512-node gang within=pod", "6. sustained mixed stream", "7. admit", "8. earliest start", "9. 512-node reserved request needing preemption", "10. 2048-node", "peak RSS", "40% of nodes busy"} {
		if !contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func BenchmarkStream(b *testing.B) {
	for i := 0; i < b.N; i++ {
		Run(io.Discard, Options{Samples: 2000, StreamFor: 3 * time.Second})
	}
}

type stringsBuilder = strings.Builder

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// benchCalendar builds the calendar of cases 7, 8 and 10: 10,000
// reservations over 2027.
func benchCalendar(b *testing.B) *placement.Calendar {
	topo, err := Fleet(196608)
	if err != nil {
		b.Fatal(err)
	}
	var stats []stat
	cal, _, err := calendarCases(topo, Options{Seed: 1, Samples: 100, Calendar: 10000, Running: 10}, func(string, ...any) {}, &stats)
	if err != nil {
		b.Fatal(err)
	}
	return cal
}

// BenchmarkCalendarPlan measures case 7 alone: a 256-node reservation
// within a pod, planned on a calendar of 10,000 reservations over a year.
func BenchmarkCalendarPlan(b *testing.B) {
	cal := benchCalendar(b)
	year := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at := year.Add(time.Duration(i*37%(330*24)) * time.Hour)
		cal.Plan(placement.Request{GPUs: 2048, Within: "pod", Class: placement.ClassReserved}, "bench", at, at.AddDate(0, 0, 30))
	}
}

// BenchmarkEarliestStart measures case 8 alone: the earliest start of a
// 4,096-GPU gang within a pod for 30 days.
func BenchmarkEarliestStart(b *testing.B) {
	cal := benchCalendar(b)
	year := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at := year.Add(time.Duration(i*37%(300*24)) * time.Hour)
		adm, err := cal.EarliestStart(placement.Request{GPUs: 4096, Within: "pod", Class: placement.ClassReserved}, "bench", at, 30*24*time.Hour, 1000)
		if err != nil || adm.Plan == nil {
			b.Fatal(err, adm.Refusal)
		}
	}
}

// BenchmarkPreempt measures case 9 alone (its own random calendar).
func BenchmarkPreempt(b *testing.B) {
	topo, err := Fleet(196608)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 77))
	pc := placement.NewCalendar(topo)
	now := time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 5000; i++ {
		r := placement.Request{GPUs: 8 * (1 + rng.IntN(8)), Class: placement.ClassSpot, Within: "rack"}
		if rng.IntN(2) == 0 {
			r.Class, r.GPUs, r.Within = placement.ClassInternal, 8*(4+rng.IntN(12)), "su"
		}
		id := fmt.Sprintf("pre-%04d", i)
		if res, err := pc.Admit(id, r, "owner", now.Add(-time.Hour), now.AddDate(0, 0, 30)); err != nil {
			b.Fatal(err)
		} else if res.Plan != nil && r.Class == placement.ClassInternal {
			if err := pc.SetElastic(id, len(res.Plan.Nodes)/2, "rack"); err != nil { // elastic, as in the bench
				b.Fatal(err)
			}
		}
	}
	notice := map[placement.Class]time.Duration{placement.ClassSpot: 2 * time.Minute, placement.ClassInternal: 30 * time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		pr, _ := pc.PlanPreemption(placement.Request{GPUs: 4096, Within: "pod", Class: placement.ClassReserved}, "acme", now, now.AddDate(0, 0, 14), notice)
		if pr.Plan == nil {
			b.Fatal(pr.Refusal)
		}
	}
}
