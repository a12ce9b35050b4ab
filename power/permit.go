package power

import (
	"context"
	"time"

	"github.com/neocloud/neocloud/fleet"
)

// PermitWarning is a limit of a site's air permit crossed, or crossed
// within the site's warning days at the current draw.
type PermitWarning struct {
	SiteID string `json:"site_id"`
	Year   int    `json:"year"`
	Limit  string `json:"limit" doc:"running_hours, or a pollutant (co2, nox, co, voc, pm, formaldehyde)."`
	// Used and Max are hours, or tonnes, of the permit year.
	Used float64 `json:"used"`
	Max  float64 `json:"max"`
	// PerDay is the current draw's rate: the last 7 metered days'.
	PerDay float64 `json:"per_day"`
	// CrossesAt: when the limit is crossed at that rate (absent once
	// crossed).
	CrossesAt *time.Time `json:"crosses_at,omitempty"`
	Exceeded  bool       `json:"exceeded,omitempty"`
	// At is the end of the metered hours the warning was computed from.
	At time.Time `json:"at"`
}

// recent is the span the current draw is measured over.
const recent = 7 * 24 * time.Hour

// warnings finds the limits crossed or crossed within the warning days
// at the current draw. The last 7 days' running hours give the hours'
// rate; generation's share of the year's generation in those days gives
// each pollutant's (units run in fixed shares, so each pollutant's
// emissions follow generation).
func warnings(site fleet.Site, ps PermitStatus, hours []HourAccount, ys, ye, to time.Time) []PermitWarning {
	days := site.Power.PermitWarningDays
	if days == 0 {
		days = 30
	}
	from := to.Add(-recent)
	if from.Before(ys) {
		from = ys
	}
	span := to.Sub(from).Hours() / 24
	if span <= 0 {
		return nil
	}
	var runRecent int
	var genRecent, genAll int64
	for _, h := range hours {
		genAll += h.GenerationWh
		if !h.Hour.Before(from) {
			genRecent += h.GenerationWh
			if h.GenerationWh > 0 {
				runRecent++
			}
		}
	}
	var out []PermitWarning
	check := func(limit string, used, max, perDay float64) {
		if max <= 0 {
			return
		}
		w := PermitWarning{SiteID: site.ID, Year: ps.Year, Limit: limit, Used: used, Max: max, PerDay: perDay, At: to}
		switch {
		case used > max:
			w.Exceeded = true
		case perDay > 0:
			leftDays := (max - used) / perDay
			if leftDays > float64(days) {
				return
			}
			left := time.Duration(leftDays * 24 * float64(time.Hour))
			if !to.Add(left).Before(ye) {
				return
			}
			at := to.Add(left).Truncate(time.Second)
			w.CrossesAt = &at
		default:
			return
		}
		out = append(out, w)
	}
	check("running_hours", float64(ps.RunningHours), ps.RunningHoursLimit, float64(runRecent)/span)
	share := 0.0
	if genAll > 0 {
		share = float64(genRecent) / float64(genAll)
	}
	lim, got := ps.TonsLimit.Named(), ps.Tons.Named()
	for i := range lim {
		check(lim[i].Name, got[i].Value, lim[i].Value, got[i].Value*share/span)
	}
	return out
}

// CheckPermits computes each permitted site's warnings up to the power
// meter's mark and records them: the first of a site, year and limit
// raises an operator event (power.permit_warning). It returns the
// warnings recorded for the first time.
func (s *Service) CheckPermits(ctx context.Context) ([]PermitWarning, error) {
	to, err := s.Store.PowerMeterThrough(ctx)
	if err != nil || to.IsZero() {
		return nil, err
	}
	var fresh []PermitWarning
	for _, site := range s.Fleet.Sites() {
		m := NewModel(site.Power)
		if m == nil || site.Power.Permit == nil || len(m.Units) == 0 {
			continue
		}
		ps, err := s.permit(ctx, m, site, to)
		if err != nil {
			return fresh, err
		}
		for _, w := range ps.Warnings {
			var first bool
			if err := s.Tx.InTx(ctx, func(ctx context.Context) error {
				first, err = s.Store.PutPermitWarning(ctx, w)
				return err
			}); err != nil {
				return fresh, err
			}
			if first {
				fresh = append(fresh, w)
				s.Logger.Warn("permit limit", "site", site.Name, "limit", w.Limit, "used", w.Used, "max", w.Max, "crosses_at", w.CrossesAt, "exceeded", w.Exceeded)
				if s.Notify != nil {
					s.Notify()
				}
			}
		}
	}
	return fresh, nil
}
