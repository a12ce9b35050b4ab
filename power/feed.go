package power

import (
	"context"
	"fmt"
	"time"

	"github.com/neocloud/neocloud"
)

// FeedReading is one hour's energy through a supply meter: a grid feed's
// or an on-site generation unit's.
type FeedReading struct {
	Feed string    `json:"feed" doc:"A grid feed or generation unit of the site's power model."`
	Hour time.Time `json:"hour" doc:"The hour's start (RFC 3339, on the hour)."`
	Wh   int64     `json:"wh" minimum:"0" doc:"Watt-hours through the meter in that hour."`
}

// FeedReadingsInput reports supply meters' hours.
type FeedReadingsInput struct {
	Readings []FeedReading `json:"readings" minItems:"1" maxItems:"100000"`
}

// Reconciliation sets the site's supply meters against the facility
// energy its nodes, shared load and PUE account for, over the hours some
// meter reported: the difference is the unallocated line (losses,
// unmetered load, a meter's error).
type Reconciliation struct {
	Hours int `json:"hours" doc:"Hours of the period with supply-meter readings."`
	// MeteredWh: what the supply meters read over those hours; by meter
	// in Meters.
	MeteredWh int64            `json:"metered_wh"`
	Meters    map[string]int64 `json:"meters"`
	// AccountedWh: the facility energy accounted for those hours (IT ×
	// PUE).
	AccountedWh int64 `json:"accounted_wh"`
	// UnallocatedWh = metered − accounted (negative: the account exceeds
	// the meters).
	UnallocatedWh int64 `json:"unallocated_wh"`
}

// PutFeedReadings stores supply meters' hours for a site; a reading of an
// hour already reported replaces it. Every reading is checked first: a
// meter the site's power model does not name, an hour not on the hour
// or not yet over, or negative energy refuses them all, naming the field.
func (s *Service) PutFeedReadings(ctx context.Context, siteRef string, in FeedReadingsInput) (int, error) {
	site, err := s.site(siteRef)
	if err != nil {
		return 0, err
	}
	if site.Power == nil {
		return 0, neocloud.Invalid("site", "site %s has no power model: declare its feeds first", site.Name)
	}
	meters := map[string]bool{}
	for _, f := range site.Power.Feeds {
		meters[f.Name] = true
	}
	for _, g := range site.Power.Generation {
		meters[g.Name] = true
	}
	if len(in.Readings) == 0 {
		return 0, neocloud.Invalid("body.readings", "must list at least one reading")
	}
	now := s.now()
	for i, r := range in.Readings {
		field := fmt.Sprintf("body.readings[%d]", i)
		switch {
		case !meters[r.Feed]:
			return 0, neocloud.Invalid(field+".feed", "site %s has no feed or generation unit %q", site.Name, r.Feed)
		case r.Hour.IsZero() || !r.Hour.Equal(r.Hour.Truncate(time.Hour)):
			return 0, neocloud.Invalid(field+".hour", "must be the start of an hour, such as 2027-01-05T10:00:00Z")
		case r.Hour.Add(time.Hour).After(now):
			return 0, neocloud.Invalid(field+".hour", "the hour %s is not over yet", r.Hour.UTC().Format(time.RFC3339))
		case r.Wh < 0:
			return 0, neocloud.Invalid(field+".wh", "must not be negative")
		}
	}
	return len(in.Readings), s.Tx.InTx(ctx, func(ctx context.Context) error {
		return s.Store.PutFeedReadings(ctx, site.ID, in.Readings, now)
	})
}

// reconcile sets readings against an account's hours.
func reconcile(readings []FeedReading, hours []HourAccount) *Reconciliation {
	if len(readings) == 0 {
		return nil
	}
	r := &Reconciliation{Meters: map[string]int64{}}
	read := map[int64]bool{}
	for _, x := range readings {
		r.MeteredWh += x.Wh
		r.Meters[x.Feed] += x.Wh
		read[x.Hour.Unix()] = true
	}
	r.Hours = len(read)
	for _, h := range hours {
		if read[h.Hour.Unix()] {
			r.AccountedWh += h.FacilityWh
		}
	}
	r.UnallocatedWh = r.MeteredWh - r.AccountedWh
	return r
}
