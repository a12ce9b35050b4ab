package fleet

import (
	"fmt"
	"math"
	"strings"
)

// PowerFault is one invalid field of a power model.
type PowerFault struct {
	Field   string
	Message string
}

// Faults lists what is wrong with a power model, each naming its field
// (site.power.…).
func (pw *Power) Faults() []PowerFault {
	var out []PowerFault
	bad := func(field, format string, args ...any) {
		out = append(out, PowerFault{"site.power." + field, fmt.Sprintf(format, args...)})
	}
	nonNeg := func(field string, v float64) {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			bad(field, "must be a number, not negative")
		}
	}
	names := map[string]bool{}
	for i, f := range pw.Feeds {
		field := fmt.Sprintf("feeds[%d]", i)
		if f.Name == "" || names[f.Name] {
			bad(field+".name", "must be given and unique among feeds and generation units")
		}
		names[f.Name] = true
		if !(f.CapacityMW > 0) {
			bad(field+".capacity_mw", "must be positive (megawatts)")
		}
		nonNeg(field+".carbon_g_per_kwh", f.CarbonGPerKWh)
		if n := len(f.CarbonProfile); n != 0 && n != 24 {
			bad(field+".carbon_profile_g_per_kwh", "must have 24 values (gCO2e/kWh for each UTC hour of the day), not %d", n)
		}
		for _, v := range f.CarbonProfile {
			nonNeg(field+".carbon_profile_g_per_kwh", v)
		}
	}
	for i, g := range pw.Generation {
		field := fmt.Sprintf("generation[%d]", i)
		if g.Name == "" || names[g.Name] {
			bad(field+".name", "must be given and unique among feeds and generation units")
		}
		names[g.Name] = true
		if !(g.CapacityMW > 0) {
			bad(field+".capacity_mw", "must be positive (megawatts)")
		}
		nonNeg(field+".heat_rate_mmbtu_per_mwh", g.HeatRateMMBtuPerMWh)
		for _, pv := range g.KgPerMWh.Named() {
			nonNeg(field+".emissions_kg_per_mwh."+pv.Name, pv.Value)
		}
	}
	if pw.Permit != nil {
		nonNeg("permit.mw", pw.Permit.MW)
		nonNeg("permit.running_hours_per_year", pw.Permit.RunningHoursPerYear)
		if pw.Permit.RunningHoursPerYear > 8784 {
			bad("permit.running_hours_per_year", "must be at most 8784 (a leap year's hours)")
		}
		for _, pv := range pw.Permit.TonsPerYear.Named() {
			nonNeg("permit.tons_per_year."+pv.Name, pv.Value)
		}
	}
	if n := len(pw.PUEMonthly); n != 0 && n != 12 {
		bad("pue_monthly", "must have 12 values (January first), not %d", n)
	}
	for _, v := range pw.PUEMonthly {
		if !(v >= 1) {
			bad("pue_monthly", "each month's PUE must be at least 1")
			break
		}
	}
	nonNeg("wue_l_per_kwh", pw.WUELPerKWh)
	nonNeg("carbon_intensity_g_per_kwh", pw.CarbonIntensityGPerKWh)
	nonNeg("shared_it_kw", pw.SharedITKW)
	if pw.PermitWarningDays < 0 || pw.PermitWarningDays > 366 {
		bad("permit_warning_days", "must be between 0 and 366")
	}
	paths := map[string]bool{}
	for i, d := range pw.Domains {
		field := fmt.Sprintf("domains[%d]", i)
		if d.Path == "" || strings.HasPrefix(d.Path, "/") || strings.HasSuffix(d.Path, "/") || strings.Contains(d.Path, "//") || paths[d.Path] {
			bad(field+".path", "must be a unique path of the power hierarchy such as feed-1/h1")
		}
		paths[d.Path] = true
		if !(d.CapacityKW > 0) || math.IsInf(d.CapacityKW, 0) {
			bad(field+".capacity_kw", "must be positive (kilowatts)")
		}
	}
	return out
}

// Pollutant is one named amount.
type Pollutant struct {
	Name  string
	Value float64
}

// Named lists the pollutants, in a fixed order, by the names reports and
// permits use.
func (p Pollutants) Named() []Pollutant {
	return []Pollutant{{"co2", p.CO2}, {"nox", p.NOx}, {"co", p.CO}, {"voc", p.VOC}, {"pm", p.PM}, {"formaldehyde", p.Formaldehyde}}
}
