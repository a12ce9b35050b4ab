package power

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/neocloud/neocloud/fleet"
)

var update = flag.Bool("update", false, "rewrite the golden reports")

func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != string(got)+"\n" {
		t.Fatalf("%s differs from the golden file:\n%s", name, got)
	}
}

var jan = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

// month builds January's hours: nodes drawing a base load with a daily
// swing, tenants' records, internal work.
func month(nodesW func(h int) int64, tenants map[string]func(h int) int64, internal func(h int) int64) []HourIT {
	var out []HourIT
	for h := range 31 * 24 {
		hi := HourIT{Hour: jan.Add(time.Duration(h) * time.Hour), NodesJ: nodesW(h) * 3600, TenantsJ: map[string]int64{}}
		for name, f := range tenants {
			hi.TenantsJ[name] = f(h) * 3600
		}
		if internal != nil {
			hi.InternalJ = internal(h) * 3600
		}
		out = append(out, hi)
	}
	return out
}

// conserved checks that the parties sum to the site, to the watt-hour,
// and that the hours sum to the totals.
func conserved(t interface{ Fatalf(string, ...any) }, a Account, hours []HourIT, m *Model) {
	var it, fac int64
	for _, p := range a.Parties {
		it += p.ITWh
		fac += p.FacilityWh
	}
	if it != a.Site.ITWh || fac != a.Site.FacilityWh {
		t.Fatalf("parties sum to %d Wh IT, %d Wh facility; the site has %d, %d", it, fac, a.Site.ITWh, a.Site.FacilityWh)
	}
	var nodes int64
	for _, h := range hours {
		nodes += wh(h.NodesJ) + m.SharedITW
	}
	if nodes != a.Site.ITWh {
		t.Fatalf("the site's IT energy is %d Wh; its nodes and shared load metered %d Wh", a.Site.ITWh, nodes)
	}
	var g, gen, un, f2 int64
	for _, h := range a.Hours {
		g, gen, un, f2 = g+h.GridWh, gen+h.GenerationWh, un+h.UnservedWh, f2+h.FacilityWh
	}
	if g != a.GridWh || gen != a.GenerationWh || un != a.UnservedWh || g+gen+un != a.Site.FacilityWh || f2 != a.Site.FacilityWh {
		t.Fatalf("dispatch: grid %d + generation %d + unserved %d Wh against facility %d Wh", g, gen, un, a.Site.FacilityWh)
	}
}

func report(t *testing.T, name string, p *fleet.Power, hours []HourIT) Account {
	t.Helper()
	if fs := p.Faults(); len(fs) > 0 {
		t.Fatalf("the power model: %+v", fs)
	}
	m := NewModel(p)
	a := m.Account(hours)
	conserved(t, a, hours, m)
	g := a
	g.Hours = nil // the totals are golden; the hours sum to them
	golden(t, name, g)
	return a
}

// A grid-only site: two feeds, one with an hourly carbon profile; a
// tenant on 40 of 100 nodes; idle nodes and shared IT load are the
// operator's.
func TestGoldenGridOnly(t *testing.T) {
	profile := make([]float64, 24)
	for h := range profile {
		profile[h] = 300 + 10*float64(h) // dirtier towards the evening
	}
	p := &fleet.Power{PUE: 1.25, WUELPerKWh: 0.5, SharedITKW: 50, CarbonIntensityGPerKWh: 400,
		Feeds: []fleet.Feed{{Name: "feed-1", CapacityMW: 6, CarbonProfile: profile}, {Name: "feed-2", CapacityMW: 4}}}
	tenant := func(h int) int64 { return 40 * (9_000 + int64(h%24)*50) }
	a := report(t, "grid_only", p, month(func(h int) int64 { return 60*1_000 + tenant(h) + 40*300 }, map[string]func(int) int64{"ten_a": tenant}, nil))
	if a.GenerationWh != 0 || a.UnservedWh != 0 || len(a.Units) != 0 {
		t.Fatalf("a grid-only site generated %d Wh, left %d unserved", a.GenerationWh, a.UnservedWh)
	}
	// Units: 1.25 × IT, litres per IT kWh, and grams (not kilograms or
	// tonnes) from g/kWh × kWh.
	if a.Site.FacilityWh != a.Site.ITWh*5/4 {
		t.Fatalf("facility %d Wh for %d Wh IT at PUE 1.25", a.Site.FacilityWh, a.Site.ITWh)
	}
	if math.Abs(a.Site.WaterL-float64(a.Site.ITWh)/1000*0.5) > 1e-6 {
		t.Fatalf("water %f L for %d Wh IT at 0.5 L/kWh", a.Site.WaterL, a.Site.ITWh)
	}
	lo, hi := float64(a.Site.FacilityWh)/1000*300, float64(a.Site.FacilityWh)/1000*530
	if a.Site.Scope2G < lo || a.Site.Scope2G > hi {
		t.Fatalf("scope 2: %f g for %d Wh between 300 and 530 g/kWh", a.Site.Scope2G, a.Site.FacilityWh)
	}
}

// Grid plus turbines: the grid first, generation for the rest within the
// permit; peaks beyond firm capacity are unserved; generation is Scope 1
// with its pollutants.
func TestGoldenGridAndTurbines(t *testing.T) {
	turbine := func(name string) fleet.Generation {
		return fleet.Generation{Name: name, CapacityMW: 5, HeatRateMMBtuPerMWh: 9.5,
			KgPerMWh: fleet.Pollutants{CO2: 530, NOx: 0.35, CO: 0.2, VOC: 0.02, PM: 0.03, Formaldehyde: 0.004}}
	}
	p := &fleet.Power{PUE: 1.2, WUELPerKWh: 1.8, CarbonIntensityGPerKWh: 420,
		Feeds:      []fleet.Feed{{Name: "feed-1", CapacityMW: 10}},
		Generation: []fleet.Generation{turbine("t1"), turbine("t2"), turbine("t3")},
		Permit:     &fleet.Permit{MW: 12, RunningHoursPerYear: 5000, TonsPerYear: fleet.Pollutants{NOx: 50, CO: 40, VOC: 5, PM: 5, Formaldehyde: 1}}}
	m := NewModel(p)
	if m.FirmW() != 22_000_000 {
		t.Fatalf("firm capacity %d W; want 10 MW grid + 12 MW generation within the permit", m.FirmW())
	}
	// 12 to 20 MW of IT (14.4 to 24 MW facility) over the day.
	load := func(h int) int64 { return 12_000_000 + int64(h%24)*350_000 }
	a := report(t, "grid_and_turbines", p, month(load, map[string]func(int) int64{"ten_lease": func(h int) int64 { return load(h) * 3 / 4 }}, nil))
	if a.GenerationWh == 0 || a.UnservedWh == 0 || a.Site.Scope1G.NOx <= 0 {
		t.Fatalf("generation %d Wh, unserved %d Wh, NOx %f g", a.GenerationWh, a.UnservedWh, a.Site.Scope1G.NOx)
	}
	for _, h := range a.Hours {
		if h.GenerationWh > 0 && h.GridWh != 10_000_000 {
			t.Fatalf("%s: generation ran while the grid carried %d W of its 10 MW", h.Hour, h.GridWh)
		}
		if h.GenerationWh > 12_000_000 {
			t.Fatalf("%s: %d W generated beyond the permit's 12 MW", h.Hour, h.GenerationWh)
		}
	}
	var kg float64
	for _, u := range a.Units {
		kg += u.EmittedG.CO2
	}
	if math.Abs(kg-float64(a.GenerationWh)/1e6*530*1000) > 1 {
		t.Fatalf("units emitted %f g CO2 for %d Wh at 530 kg/MWh", kg, a.GenerationWh)
	}
}

// A lease and internal work: internal work is the operator's; hours where
// the records claim more than the nodes metered show as unallocated.
func TestGoldenLeaseAndInternal(t *testing.T) {
	p := &fleet.Power{PUEMonthly: []float64{1.3, 1.3, 1.25, 1.2, 1.15, 1.1, 1.1, 1.1, 1.15, 1.2, 1.25, 1.3}, CarbonIntensityGPerKWh: 380,
		Feeds: []fleet.Feed{{Name: "feed-1", CapacityMW: 30}}, SharedITKW: 120}
	lease := func(h int) int64 { return 10_000_000 }
	internal := func(h int) int64 { return 4_000_000 + int64(h%7)*100_000 }
	nodes := func(h int) int64 {
		if h%24 == 3 {
			return 13_900_000 // the records claim more than was metered
		}
		return 15_000_000
	}
	a := report(t, "lease_and_internal", p, month(nodes, map[string]func(int) int64{"ten_lease": lease}, internal))
	var un, op int64
	for _, s := range a.Parties {
		switch s.Party {
		case Unallocated:
			un = s.ITWh
		case Operator:
			op = s.ITWh
		}
	}
	if un >= 0 || op <= 0 {
		t.Fatalf("operator %d Wh, unallocated %d Wh", op, un)
	}
}

// Tenants + operator + unallocated = the site, to the watt-hour, whatever
// the hours; the dispatch serves the facility load exactly.
func TestEnergyIsConserved(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := &fleet.Power{PUE: rapid.Float64Range(1, 2).Draw(t, "pue"), SharedITKW: rapid.Float64Range(0, 500).Draw(t, "shared"),
			Feeds: []fleet.Feed{{Name: "f", CapacityMW: rapid.Float64Range(0.1, 20).Draw(t, "feed")}}}
		if rapid.Bool().Draw(t, "turbines") {
			p.Generation = []fleet.Generation{{Name: "g1", CapacityMW: rapid.Float64Range(0.1, 10).Draw(t, "g1")}, {Name: "g2", CapacityMW: 3}}
			p.Permit = &fleet.Permit{MW: rapid.Float64Range(0, 15).Draw(t, "permit")}
		}
		m := NewModel(p)
		var hours []HourIT
		for i := range rapid.IntRange(1, 48).Draw(t, "hours") {
			h := HourIT{Hour: jan.Add(time.Duration(i) * time.Hour), NodesJ: rapid.Int64Range(0, 1e11).Draw(t, "nodes"), TenantsJ: map[string]int64{},
				InternalJ: rapid.Int64Range(0, 1e10).Draw(t, "internal")}
			for k := range rapid.IntRange(0, 4).Draw(t, "tenants") {
				h.TenantsJ[string(rune('a'+k))] = rapid.Int64Range(0, 3e10).Draw(t, "tenant")
			}
			hours = append(hours, h)
		}
		conserved(t, m.Account(hours), hours, m)
	})
}

func TestDispatchAndFaults(t *testing.T) {
	m := NewModel(&fleet.Power{Feeds: []fleet.Feed{{Name: "a", CapacityMW: 3}, {Name: "b", CapacityMW: 1}},
		Generation: []fleet.Generation{{Name: "g", CapacityMW: 2}}})
	d := m.Dispatch(5_000_001)
	if d.FeedW[0] != 3_000_000 || d.FeedW[1] != 1_000_000 || d.UnitW[0] != 1_000_001 || d.UnservedW != 0 {
		t.Fatalf("5 MW: %+v", d)
	}
	d = m.Dispatch(1_000_003)
	if d.FeedW[0]+d.FeedW[1] != 1_000_003 || d.FeedW[0] != 750_002 || d.UnitW[0] != 0 {
		t.Fatalf("1 MW shared 3:1 by the feeds: %+v", d)
	}
	if d := m.Dispatch(7_000_000); d.UnservedW != 1_000_000 {
		t.Fatalf("7 MW on 6 MW firm: %+v", d)
	}
	bad := &fleet.Power{Feeds: []fleet.Feed{{Name: "a", CapacityMW: -1, CarbonProfile: []float64{1, 2}}, {Name: "a", CapacityMW: 1}},
		PUEMonthly: []float64{1.2}, Permit: &fleet.Permit{RunningHoursPerYear: 9000, TonsPerYear: fleet.Pollutants{NOx: -1}},
		Domains: []fleet.PowerDomain{{Path: "a/h1", CapacityKW: 0}, {Path: "a/h1/", CapacityKW: 1}}, PermitWarningDays: -1}
	want := []string{"site.power.feeds[0].capacity_mw", "site.power.feeds[0].carbon_profile_g_per_kwh", "site.power.feeds[1].name",
		"site.power.permit.running_hours_per_year", "site.power.permit.tons_per_year.nox", "site.power.pue_monthly",
		"site.power.domains[0].capacity_kw", "site.power.domains[1].path", "site.power.permit_warning_days"}
	got := map[string]bool{}
	for _, f := range bad.Faults() {
		got[f.Field] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Fatalf("no fault named %s in %+v", w, bad.Faults())
		}
	}
}
