package finance

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

var t0 = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

// Precedence: down beats maintenance beats work; lease takes a node's
// GPUs before spot; a spare's GPUs left over are spare, others idle.
func TestAccountPrecedence(t *testing.T) {
	nodes := []NodeTime{
		{NodeID: "a", GPUs: 8, Since: t0,
			Down:        []Interval{{at(30), at(45)}},
			Maintenance: []Interval{{at(40), at(70)}},
			Work:        []Work{{at(0), at(120), 8, Lease}, {at(0), at(120), 4, Spot}}},
		{NodeID: "b", GPUs: 8, Spare: true, Since: t0, Work: []Work{{at(0), at(60), 2, Internal}}},
		{NodeID: "c", GPUs: 8, Since: at(90)}, // joins mid-way
	}
	h := Account(nodes, t0, at(120))
	if len(h.Hours) != 2 {
		t.Fatalf("%d hours", len(h.Hours))
	}
	want := map[string][2]int64{
		Down:        {8 * 15 * 60, 0},
		Maintenance: {8 * 15 * 60, 8 * 10 * 60}, // 45–60 (down before), then 60–70
		Lease:       {8 * 30 * 60, 8 * 50 * 60},
		Spot:        {0, 0}, // the lease holds all eight GPUs
		Internal:    {2 * 3600, 0},
		Spare:       {6 * 3600, 8 * 3600},
		Idle:        {0, 8 * 30 * 60},
	}
	for c, name := range Categories {
		w := want[name]
		if h.Series[c][0] != w[0] || h.Series[c][1] != w[1] {
			t.Errorf("%s: %v, want %v", name, []int64{h.Series[c][0], h.Series[c][1]}, w)
		}
	}
}

// Whatever the spans, every hour's categories sum to the GPUs in the
// fleet that hour × its seconds, and no category is negative.
func TestAccountAddsUp(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		span := func(label string) Interval {
			a := rapid.IntRange(-60, 300).Draw(t, label+".from")
			b := rapid.IntRange(a, a+240).Draw(t, label+".to")
			return Interval{at(a), at(b)}
		}
		var nodes []NodeTime
		for i := range rapid.IntRange(1, 5).Draw(t, "nodes") {
			n := NodeTime{NodeID: string(rune('a' + i)), GPUs: rapid.SampledFrom([]int{4, 8}).Draw(t, "gpus"), Spare: rapid.Bool().Draw(t, "spare"),
				Since: at(rapid.IntRange(-60, 200).Draw(t, "since"))}
			for range rapid.IntRange(0, 3).Draw(t, "down") {
				n.Down = append(n.Down, span("down"))
			}
			for range rapid.IntRange(0, 2).Draw(t, "maint") {
				n.Maintenance = append(n.Maintenance, span("maint"))
			}
			for range rapid.IntRange(0, 4).Draw(t, "work") {
				s := span("work")
				n.Work = append(n.Work, Work{s.From, s.To, rapid.IntRange(1, 8).Draw(t, "workgpus"), rapid.SampledFrom(classes).Draw(t, "class")})
			}
			nodes = append(nodes, n)
		}
		end := at(rapid.IntRange(1, 300).Draw(t, "end"))
		h := Account(nodes, t0, end)
		for i, hr := range h.Hours {
			hEnd := hr.Add(time.Hour)
			if end.Before(hEnd) {
				hEnd = end
			}
			var want, got int64
			for _, n := range nodes {
				s := hr
				if n.Since.After(s) {
					s = n.Since
				}
				if s.Before(hEnd) {
					want += int64(n.GPUs) * int64(hEnd.Sub(s)/time.Second)
				}
			}
			for c := range Categories {
				if h.Series[c][i] < 0 {
					t.Fatalf("hour %d: %s negative", i, Categories[c])
				}
				got += h.Series[c][i]
			}
			if got != want {
				t.Fatalf("hour %d: categories sum to %d GPU-seconds, the fleet had %d", i, got, want)
			}
		}
	})
}
