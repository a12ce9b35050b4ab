// Package placementbench measures the placer on a Colossus-sized fleet: the
// cases and quality comparisons of `neocloud bench placement`. It keeps the
// clock out of the placement package, which must not read one.
package placementbench

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
)

// Options size a run.
type Options struct {
	Seed      uint64
	GPUs      int           // fleet size (default 196,608)
	Fill      float64       // occupancy to reach before measuring (default 0.70)
	Samples   int           // samples per latency case (default 20,000)
	StreamFor time.Duration // length of the sustained stream (default 5s)
	Calendar  int           // reservations on the calendar of cases 7, 8, 10 (default 10,000)
	Running   int           // spot and internal reservations running in case 9 (default 5,000)
	Progress  io.Writer     // progress lines, or nil
}

func (o *Options) defaults() {
	if o.GPUs == 0 {
		o.GPUs = 196608
	}
	if o.Fill == 0 {
		o.Fill = 0.70
	}
	if o.Samples == 0 {
		o.Samples = 20000
	}
	if o.StreamFor == 0 {
		o.StreamFor = 5 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Calendar == 0 {
		o.Calendar = 10000
	}
	if o.Running == 0 {
		o.Running = 5000
	}
}

// Fleet builds a Colossus-shaped topology: halls of 12 pods of 16 sus of 4
// racks of 8 nodes.
func Fleet(gpus int) (*placement.Topology, error) {
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var b bytes.Buffer
	if _, err := fleet.Generate(&b, fleet.ColossusOptions(sku, gpus)); err != nil {
		return nil, err
	}
	spec, err := fleet.ParseSpec(b.Bytes())
	if err != nil {
		return nil, err
	}
	site := fleet.Site{ID: "site_bench", Name: spec.Site.Name, Levels: spec.Site.Levels}
	nodes := make([]fleet.Node, len(spec.Nodes))
	for i, ns := range spec.Nodes {
		nodes[i] = fleet.Node{ID: fmt.Sprintf("node_%06d", i), Hostname: ns.Hostname, SiteID: site.ID, Site: site.Name, SKU: ns.SKU,
			Domain: ns.Domain, Lifecycle: fleet.LifecycleAvailable, Health: fleet.HealthOK}
	}
	return placement.Build(site, sku, nodes), nil
}

// mixed draws one request of the fill and sustained streams: mostly single
// nodes and partitions, some rack-, su- and pod-sized gangs.
func mixed(rng *rand.Rand) placement.Request {
	switch x := rng.IntN(100); {
	case x < 30:
		return placement.Request{GPUs: 8, Class: placement.ClassOnDemand}
	case x < 50:
		return placement.Request{GPUs: []int{1, 2, 4}[rng.IntN(3)], Class: placement.ClassOnDemand}
	case x < 75:
		return placement.Request{GPUs: 8 * (2 + rng.IntN(7)), Class: placement.ClassReserved, Within: "rack"}
	case x < 92:
		return placement.Request{GPUs: 8 * (9 + rng.IntN(24)), Class: placement.ClassReserved, Within: "su"}
	case x < 98:
		return placement.Request{GPUs: 8 * (64 + rng.IntN(192)), Class: placement.ClassReserved, Within: "pod"}
	default:
		return placement.Request{GPUs: 8 * (16 + rng.IntN(48)), Class: placement.ClassSpot}
	}
}

type stat struct {
	name string
	lat  []time.Duration
	ops  float64 // per second, for streams
	note string
}

func (s stat) q(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	sort.Slice(s.lat, func(i, j int) bool { return s.lat[i] < s.lat[j] })
	return s.lat[int(p*float64(len(s.lat)-1))]
}

// timeIt runs fn n times and returns each latency. The garbage of the
// setup before it (building fleets and calendars) is collected first, so
// that a case pays for its own allocations only.
func timeIt(n int, fn func(i int)) []time.Duration {
	runtime.GC()
	lat := make([]time.Duration, n)
	for i := range lat {
		t0 := time.Now()
		fn(i)
		lat[i] = time.Since(t0)
	}
	return lat
}

// Run measures every case and writes the table to w.
func Run(w io.Writer, o Options) error {
	o.defaults()
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}
	t0 := time.Now()
	topo, err := Fleet(o.GPUs)
	if err != nil {
		return err
	}
	say("fleet: %d nodes × 8 GPUs built in %v", topo.Nodes(), time.Since(t0).Round(time.Millisecond))

	// Fill to the target occupancy with the placer itself.
	s := placement.NewSnapshot(topo)
	rng := rand.New(rand.NewPCG(o.Seed, 42))
	var live []*placement.Plan
	var gangs []*placement.Plan
	var ffGangs []*placement.Plan
	fills := 0
	for s.Utilization() < o.Fill {
		if len(live) > 0 && rng.IntN(10) == 0 {
			j := rng.IntN(len(live))
			s.Release(live[j])
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
			continue
		}
		r := mixed(rng)
		var ff *placement.Plan
		if r.GPUs >= 64 {
			ff = s.FirstFit(r.GPUs)
		}
		res, err := s.Place(r)
		if err != nil {
			return err
		}
		if res.Plan == nil {
			continue
		}
		s.Commit(res.Plan)
		live = append(live, res.Plan)
		fills++
		if r.GPUs >= 64 && ff != nil {
			gangs = append(gangs, res.Plan)
			ffGangs = append(ffGangs, ff)
		}
		if fills%5000 == 0 {
			say("fill: %d placements, %.0f%% of GPUs in use", fills, 100*s.Utilization())
		}
	}
	say("fill: %d placements, %.1f%% of GPUs in use", fills, 100*s.Utilization())

	var stats []stat
	place := func(r placement.Request) *placement.Plan {
		res, err := s.Place(r)
		if err != nil {
			panic(err)
		}
		return res.Plan
	}
	// 1, 2: a node and a partition.
	var fit1, fit2 int
	stats = append(stats, stat{name: "1. one 8-GPU node", lat: timeIt(o.Samples, func(int) {
		if place(placement.Request{GPUs: 8}) != nil {
			fit1++
		}
	})})
	stats = append(stats, stat{name: "2. one 1-GPU partition", lat: timeIt(o.Samples, func(int) {
		if place(placement.Request{GPUs: 1}) != nil {
			fit2++
		}
	})})
	// 3: a pod-sized gang within a pod.
	var gang *placement.Plan
	stats = append(stats, stat{name: "3. 512-node gang within=pod", lat: timeIt(max(o.Samples/20, 50), func(int) {
		gang = place(placement.Request{GPUs: 4096, Within: "pod", Class: placement.ClassReserved})
	})})
	if gang != nil {
		stats[len(stats)-1].note = fmt.Sprintf("pods %d, sus %d (bounds %d, %d)", gang.Used("pod"), gang.Used("su"), bound(gang, "pod"), bound(gang, "su"))
	} else {
		stats[len(stats)-1].note = "no whole pod free"
	}
	// 4: a whole hall on an empty hall (a fresh snapshot).
	empty := placement.NewSnapshot(topo)
	var hall *placement.Plan
	stats = append(stats, stat{name: "4. whole hall, empty hall", lat: timeIt(max(o.Samples/100, 20), func(int) {
		res, _ := empty.Place(placement.Request{Whole: "h1", Class: placement.ClassLease})
		hall = res.Plan
	})})
	if hall != nil {
		stats[len(stats)-1].note = fmt.Sprintf("%d nodes", len(hall.Nodes))
	}
	// 5: replace a failed node of an su-constrained allocation: the first
	// one whose su still has a free node (a full su is refused, with reasons).
	refusedFull := 0
	for _, p := range live {
		if len(p.Nodes) < 9 || len(p.Nodes) > 32 || p.Used("su") != 1 {
			continue
		}
		victim := p.Nodes[0].NodeID
		i, _ := topo.NodeIndex(victim)
		s.Block(i, placement.ReasonHealth)
		if res, _ := s.Replace(victim, "su"); res.Plan == nil {
			refusedFull++
			continue
		}
		var rep *placement.Plan
		stats = append(stats, stat{name: "5. replace a failed node within=su", lat: timeIt(o.Samples, func(int) {
			res, _ := s.Replace(victim, "su")
			rep = res.Plan
		})})
		stats[len(stats)-1].note = fmt.Sprintf("same su (%s → %s); %d earlier victims' sus were full", p.Nodes[0].Domain, rep.Nodes[0].Domain, refusedFull)
		break
	}
	// 6: a sustained mixed stream (place + commit, releases keep occupancy).
	say("stream: %v of mixed requests", o.StreamFor)
	var lat []time.Duration
	ops := 0
	start := time.Now()
	for time.Since(start) < o.StreamFor {
		for b := 0; b < 256; b++ {
			var r placement.Request
			if len(live) > 0 && s.Utilization() > o.Fill {
				j := rng.IntN(len(live))
				s.Release(live[j])
				live[j] = live[len(live)-1]
				live = live[:len(live)-1]
				continue
			}
			r = mixed(rng)
			t := time.Now()
			res, _ := s.Place(r)
			if res.Plan != nil {
				s.Commit(res.Plan)
				live = append(live, res.Plan)
			}
			lat = append(lat, time.Since(t))
			ops++
		}
	}
	el := time.Since(start)
	stats = append(stats, stat{name: "6. sustained mixed stream", lat: lat, ops: float64(ops) / el.Seconds(),
		note: fmt.Sprintf("%.0f%% in use at the end", 100*s.Utilization())})

	cal, calNote, err := calendarCases(topo, o, say, &stats)
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "placement on %d nodes × 8 GPUs (%d GPUs), filled to %.0f%% by %d placements (seed %d)\n\n", topo.Nodes(), topo.Nodes()*8, 100*o.Fill, fills, o.Seed)
	fmt.Fprintln(tw, "case\tn\tp50\tp99\tthroughput/s\tnote")
	for _, st := range stats {
		thr := st.ops
		if thr == 0 && len(st.lat) > 0 {
			var sum time.Duration
			for _, l := range st.lat {
				sum += l
			}
			thr = float64(len(st.lat)) / sum.Seconds()
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%v\t%.0f\t%s\n", st.name, len(st.lat), st.q(0.5).Round(100*time.Nanosecond), st.q(0.99).Round(100*time.Nanosecond), thr, st.note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s\npeak RSS: %d MiB\n\n", calNote, peakRSS()/1024)

	// Quality.
	fmt.Fprintln(w, "quality (domains spanned; lower bound on the free capacity at the time)")
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "test\tplacer pods\tplacer sus\tfirst-fit pods\tfirst-fit sus\tbound pods\tbound sus\tbound sus, fewest pods")
	var pe, se, fpe, fse, pb, sb int
	for i, g := range gangs {
		pe += g.Used("pod")
		se += g.Used("su")
		fpe += ffGangs[i].Used("pod")
		fse += ffGangs[i].Used("su")
		pb += bound(g, "pod")
		sb += bound(g, "su")
	}
	fmt.Fprintf(tw, "fill stream: %d gangs ≥ 8 nodes (sums)\t%d\t%d\t%d\t%d\t%d\t%d\t\n", len(gangs), pe, se, fpe, fse, pb, sb)
	for _, q := range []struct {
		name  string
		setup func(s *placement.Snapshot)
	}{
		{"5 stray nodes in the first su, then 3 × 4,096-GPU gangs", func(s *placement.Snapshot) { busyFirst(s, 5) }},
		{"40% of nodes busy at random, then 3 × 512-node gangs", func(s *placement.Snapshot) {
			busyRandom(s, 0.40, o.Seed)
		}},
	} {
		a, b := placement.NewSnapshot(topo), placement.NewSnapshot(topo)
		q.setup(a)
		q.setup(b)
		var row [7]int
		for g := 0; g < 3; g++ {
			_, nested := a.NestedBound(1, 512)
			row[6] += nested
			res, _ := a.Place(placement.Request{GPUs: 4096, Class: placement.ClassReserved})
			ff := b.FirstFit(4096)
			if res.Plan == nil || ff == nil {
				fmt.Fprintf(tw, "%s: gang %d did not fit\n", q.name, g+1)
				break
			}
			row[0] += res.Plan.Used("pod")
			row[1] += res.Plan.Used("su")
			row[2] += ff.Used("pod")
			row[3] += ff.Used("su")
			row[4] += bound(res.Plan, "pod")
			row[5] += bound(res.Plan, "su")
			a.Commit(res.Plan)
			b.Commit(ff)
		}
		fmt.Fprintf(tw, "%s (sums of 3)\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", q.name, row[0], row[1], row[2], row[3], row[4], row[5], row[6])
	}
	// 10: future reservations on the busy calendar, against the bound.
	year := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, nodes := range []int{512, 2048} {
		at := year.AddDate(0, 6, 0)
		res, err := cal.Plan(placement.Request{GPUs: nodes * 8, Class: placement.ClassReserved}, "bench", at, at.AddDate(0, 0, 30))
		if err != nil {
			return err
		}
		if res.Plan == nil {
			fmt.Fprintf(tw, "10. %d-node future reservation (30 days from mid-year)\trefused: %s\n", nodes, res.Refusal.Message)
			continue
		}
		p := res.Plan
		fmt.Fprintf(tw, "10. %d-node future reservation on the calendar (30 days from mid-year)\t%d\t%d\t\t\t%d\t%d\t\n", nodes, p.Used("pod"), p.Used("su"), bound(p, "pod"), bound(p, "su"))
	}
	return tw.Flush()
}

// calendarCases builds a calendar of 10,000 reservations over one year and
// measures cases 7 to 9.
func calendarCases(topo *placement.Topology, o Options, say func(string, ...any), stats *[]stat) (*placement.Calendar, string, error) {
	rng := rand.New(rand.NewPCG(o.Seed, 77))
	year := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	cal := placement.NewCalendar(topo)
	admitted := 0
	t0 := time.Now()
	for i := 0; i < o.Calendar; i++ {
		var r placement.Request
		switch x := rng.IntN(10); {
		case x < 4:
			r = placement.Request{GPUs: 8}
		case x < 7:
			r = placement.Request{GPUs: 8 * (2 + rng.IntN(7)), Within: "rack"}
		case x < 9:
			r = placement.Request{GPUs: 8 * (9 + rng.IntN(24)), Within: "su"}
		default:
			r = placement.Request{GPUs: 8 * (33 + rng.IntN(96)), Within: "pod"}
		}
		r.Class = placement.ClassReserved
		start := year.Add(time.Duration(rng.IntN(365*24)) * time.Hour)
		end := start.Add(time.Duration(24+rng.IntN(29*24)) * time.Hour)
		res, err := cal.Admit(fmt.Sprintf("rsv-%05d", i), r, fmt.Sprintf("tenant-%02d", rng.IntN(50)), start, end)
		if err != nil {
			return nil, "", err
		}
		if res.Plan != nil {
			admitted++
		}
		if (i+1)%2000 == 0 {
			say("calendar: %d of %d reservations placed (%d admitted)", i+1, o.Calendar, admitted)
		}
	}
	note := fmt.Sprintf("calendar: %d of %d random reservations over 2027 admitted in %v (1–30 days, 1–128 nodes)", admitted, o.Calendar, time.Since(t0).Round(time.Millisecond))

	// 7: admission of a 256-node future reservation (answered, not held).
	n := max(o.Samples/100, 50)
	var fit7 int
	*stats = append(*stats, stat{name: "7. admit 256-node future reservation within=pod", lat: timeIt(n, func(int) {
		at := year.Add(time.Duration(rng.IntN(330*24)) * time.Hour)
		res, _ := cal.Plan(placement.Request{GPUs: 2048, Within: "pod", Class: placement.ClassReserved}, "bench", at, at.AddDate(0, 0, 30))
		if res.Plan != nil {
			fit7++
		}
	})})
	(*stats)[len(*stats)-1].note = fmt.Sprintf("%d of %d fit at a random start", fit7, n)
	// 8: earliest start of a 4,096-GPU gang within a pod.
	var found8 int
	var lastStart time.Time
	*stats = append(*stats, stat{name: "8. earliest start, 4,096 GPUs within=pod", lat: timeIt(max(o.Samples/400, 20), func(int) {
		at := year.Add(time.Duration(rng.IntN(300*24)) * time.Hour)
		adm, _ := cal.EarliestStart(placement.Request{GPUs: 4096, Within: "pod", Class: placement.ClassReserved}, "bench", at, 30*24*time.Hour, 1000)
		if adm.Plan != nil {
			found8++
			lastStart = adm.Start
		}
	})})
	(*stats)[len(*stats)-1].note = fmt.Sprintf("%d found; e.g. %s", found8, lastStart.Format("2006-01-02T15:04Z"))

	// 9: a 512-node reserved request that needs preemption, with 5,000
	// spot and internal reservations running.
	pc := placement.NewCalendar(topo)
	now := year.AddDate(0, 3, 0)
	running := 0
	for i := 0; i < o.Running; i++ {
		r := placement.Request{GPUs: 8 * (1 + rng.IntN(8)), Class: placement.ClassSpot, Within: "rack"}
		if rng.IntN(2) == 0 {
			r.Class, r.GPUs, r.Within = placement.ClassInternal, 8*(4+rng.IntN(12)), "su"
		}
		id := fmt.Sprintf("pre-%04d", i)
		res, err := pc.Admit(id, r, "owner", now.Add(-time.Hour), now.AddDate(0, 0, 30))
		if err != nil {
			return nil, "", err
		}
		if res.Plan != nil {
			running++
			if r.Class == placement.ClassInternal {
				if err := pc.SetElastic(id, len(res.Plan.Nodes)/2, "rack"); err != nil {
					return nil, "", err
				}
			}
		}
	}
	notice := map[placement.Class]time.Duration{placement.ClassSpot: 2 * time.Minute, placement.ClassInternal: 30 * time.Minute}
	var victims, shrinks int
	*stats = append(*stats, stat{name: "9. 512-node reserved request needing preemption", lat: timeIt(max(o.Samples/200, 50), func(int) {
		pr, _ := pc.PlanPreemption(placement.Request{GPUs: 4096, Within: "pod", Class: placement.ClassReserved}, "acme", now, now.AddDate(0, 0, 14), notice)
		victims, shrinks = 0, 0
		for _, v := range pr.Victims {
			if v.Action == "shrink" {
				shrinks++
			} else {
				victims++
			}
		}
	})})
	(*stats)[len(*stats)-1].note = fmt.Sprintf("%d running; %d evicted, %d shrunk", running, victims, shrinks)
	return cal, note, nil
}

func bound(p *placement.Plan, level string) int {
	for _, s := range p.Score {
		if s.Level == level {
			return s.BoundFree
		}
	}
	return -1
}

// busyFirst occupies the first n nodes (the first su), as stray 1-node jobs.
func busyFirst(s *placement.Snapshot, n int) {
	for i := 0; i < n; i++ {
		res, _ := s.Place(placement.Request{GPUs: 8, Class: placement.ClassOnDemand, Within: "rack"})
		if res.Plan != nil {
			s.Commit(res.Plan)
		}
	}
}

// busyRandom occupies a share of nodes chosen at random (seeded).
func busyRandom(s *placement.Snapshot, share float64, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	n := s.T.Nodes()
	perm := rng.Perm(n)
	for _, i := range perm[:int(share*float64(n))] {
		s.Occupy(i)
	}
}

// peakRSS reads the process's peak resident set in KiB (Linux), or 0.
func peakRSS() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kib int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib)
			return kib
		}
	}
	return 0
}
