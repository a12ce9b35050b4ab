package power

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
)

// Export renders a report as JSON, CSV or PDF, with its content type.
func Export(r Report, format string) ([]byte, string, error) {
	switch format {
	case "json", "":
		b, err := json.MarshalIndent(r, "", "  ")
		return append(b, '\n'), "application/json", err
	case "csv":
		b, err := CSV(r)
		return b, "text/csv; charset=utf-8", err
	case "pdf":
		b, err := PDF(r)
		return b, "application/pdf", err
	}
	return nil, "", fmt.Errorf("format %q: want json, csv or pdf", format)
}

// rows are a report's figures as (party, quantity, value, unit): the
// units in every row.
func rows(r Report) [][4]string {
	f := func(v float64, d int) string { return strconv.FormatFloat(v, 'f', d, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	var out [][4]string
	share := func(s Share) {
		out = append(out,
			[4]string{s.Party, "it_energy", i(s.ITWh), "Wh"},
			[4]string{s.Party, "facility_energy", i(s.FacilityWh), "Wh"},
			[4]string{s.Party, "water", f(s.WaterL, 1), "L"},
			[4]string{s.Party, "scope2_location_based", f(s.Scope2G, 0), "g CO2e"})
		for _, p := range s.Scope1G.Named() {
			out = append(out, [4]string{s.Party, "scope1_" + p.Name, f(p.Value, 1), "g"})
		}
	}
	total := r.Share
	if r.TenantID == "" {
		total.Party = "site"
	}
	share(total)
	for _, p := range r.Parties {
		share(p)
	}
	for _, rs := range r.Reservations {
		out = append(out, [4]string{rs.ReservationID, "it_energy", i(rs.ITWh), "Wh"}, [4]string{rs.ReservationID, "facility_energy", i(rs.FacilityWh), "Wh"},
			[4]string{rs.ReservationID, "scope2_location_based", f(rs.Scope2G, 0), "g CO2e"})
	}
	if r.TenantID == "" {
		out = append(out, [4]string{"site", "grid_energy", i(r.GridWh), "Wh"}, [4]string{"site", "generation_energy", i(r.GenerationWh), "Wh"},
			[4]string{"site", "unserved_energy", i(r.UnservedWh), "Wh"})
		for _, u := range r.Units {
			out = append(out, [4]string{u.Name, "running_hours", strconv.Itoa(u.RunningHours), "h"}, [4]string{u.Name, "generated_energy", i(u.GeneratedWh), "Wh"},
				[4]string{u.Name, "fuel", f(u.FuelMMBtu, 1), "MMBtu"})
			for _, p := range u.EmittedG.Named() {
				out = append(out, [4]string{u.Name, "emitted_" + p.Name, f(p.Value, 1), "g"})
			}
		}
		if pm := r.Permit; pm != nil {
			out = append(out, [4]string{"permit", "running_hours_ytd", strconv.Itoa(pm.RunningHours), "h"},
				[4]string{"permit", "running_hours_limit", f(pm.RunningHoursLimit, 0), "h"},
				[4]string{"permit", "running_hours_forecast", f(pm.ForecastRunningHours, 0), "h"})
			lim, fc := pm.TonsLimit.Named(), pm.ForecastTons.Named()
			for k, p := range pm.Tons.Named() {
				out = append(out, [4]string{"permit", p.Name + "_ytd", f(p.Value, 3), "t"}, [4]string{"permit", p.Name + "_limit", f(lim[k].Value, 3), "t"},
					[4]string{"permit", p.Name + "_forecast", f(fc[k].Value, 3), "t"})
			}
			for _, w := range pm.Warnings {
				when := "exceeded"
				if w.CrossesAt != nil {
					when = "crosses " + w.CrossesAt.UTC().Format("2006-01-02")
				}
				out = append(out, [4]string{"permit", "warning_" + w.Limit, when, ""})
			}
		}
		if rc := r.Reconciliation; rc != nil {
			out = append(out, [4]string{"supply_meters", "hours", strconv.Itoa(rc.Hours), "h"},
				[4]string{"supply_meters", "metered_energy", i(rc.MeteredWh), "Wh"},
				[4]string{"supply_meters", "accounted_facility_energy", i(rc.AccountedWh), "Wh"},
				[4]string{"unallocated", "supply_unallocated_energy", i(rc.UnallocatedWh), "Wh"})
		}
	}
	return out
}

// CSV writes one row per figure, each with its unit.
func CSV(r Report) ([]byte, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"site", "tenant", "period", "from", "to", "party", "quantity", "value", "unit", "estimated"})
	for _, row := range rows(r) {
		w.Write([]string{r.SiteName, r.TenantName, r.Period, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), row[0], row[1], row[2], row[3], strconv.FormatBool(r.Estimated)})
	}
	w.Flush()
	return b.Bytes(), w.Error()
}

// PDF renders the report for a sustainability team or a permit file: the
// figures with their units, the method, and the estimate flag.
func PDF(r Report) ([]byte, error) {
	p := fpdf.New("P", "mm", "A4", "")
	p.SetCompression(true)
	p.AddUTF8FontFromBytes("go", "", goregular.TTF)
	p.AddUTF8FontFromBytes("go", "B", gobold.TTF)
	title := "Energy and emissions report"
	if r.TenantID == "" && r.Permit != nil {
		title = "Energy, emissions and permit report"
	}
	p.SetTitle(title, true)
	p.SetCreationDate(r.To)
	p.SetModificationDate(r.To)
	p.SetMargins(15, 15, 15)
	p.SetAutoPageBreak(true, 18)
	p.SetFooterFunc(func() {
		p.SetY(-12)
		p.SetFont("go", "", 7)
		p.CellFormat(0, 4, fmt.Sprintf("%s · %s %s · page %d", title, r.SiteName, r.Period, p.PageNo()), "", 0, "C", false, 0, "")
	})
	p.AddPage()
	p.SetFont("go", "B", 15)
	p.CellFormat(0, 8, title, "", 1, "L", false, 0, "")
	p.SetFont("go", "", 9)
	who := "Site " + r.SiteName
	if r.TenantName != "" {
		who = "Tenant " + r.TenantName + " (" + r.TenantID + ") at site " + r.SiteName
	}
	p.MultiCell(0, 4.5, fmt.Sprintf("%s\nPeriod %s: %s to %s (UTC)\nHours with node energy metered: %d", who, r.Period,
		r.From.Format("2006-01-02"), r.To.Add(-time.Second).Format("2006-01-02"), r.HoursMetered), "", "L", false)
	if r.Estimated {
		p.SetFont("go", "B", 8.5)
		p.MultiCell(0, 4.5, "Estimated: the grid/generation split comes from the dispatch model, and node energy where no out-of-band meter reads it from GPU counters.", "", "L", false)
	}
	p.Ln(3)
	widths := []float64{45, 60, 45, 30}
	p.SetFont("go", "B", 8.5)
	p.SetFillColor(235, 238, 242)
	for k, h := range []string{"Party", "Quantity", "Value", "Unit"} {
		align := "L"
		if k == 2 {
			align = "R"
		}
		p.CellFormat(widths[k], 6, h, "B", 0, align, true, 0, "")
	}
	p.Ln(-1)
	p.SetFont("go", "", 8)
	for _, row := range rows(r) {
		for k, c := range row {
			align := "L"
			if k == 2 {
				align = "R"
			}
			p.CellFormat(widths[k], 5, c, "", 0, align, false, 0, "")
		}
		p.Ln(-1)
	}
	p.Ln(3)
	p.SetFont("go", "B", 9)
	p.CellFormat(0, 5, "Method", "", 1, "L", false, 0, "")
	p.SetFont("go", "", 8)
	p.MultiCell(0, 4, r.Method, "", "L", false)
	var b bytes.Buffer
	err := p.Output(&b)
	return b.Bytes(), err
}
