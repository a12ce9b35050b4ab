package power

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// SiteHour is a site's node energy of one hour.
type SiteHour struct {
	SiteID         string
	Hour           time.Time
	NodeEnergyJ    int64
	Nodes          int
	EstimatedNodes int
	DerivedAt      time.Time
}

// PartyHour is the energy of record of one tenant's work (or internal
// work's) at a site in one hour.
type PartyHour struct {
	Hour     time.Time
	TenantID string
	Internal bool
	EnergyJ  int64
}

// Store is what the power service keeps and reads.
type Store interface {
	SKUs(ctx context.Context) ([]fleet.SKU, error)
	EnergyReadingsAt(ctx context.Context, from, to time.Time) ([]agents.EnergyReading, error)
	PutSiteEnergy(ctx context.Context, hs []SiteHour) error
	SiteEnergy(ctx context.Context, siteID string, from, to time.Time) ([]SiteHour, error)
	// PartyEnergy sums a site's usage records by hour and tenant.
	PartyEnergy(ctx context.Context, siteID string, from, to time.Time) ([]PartyHour, error)
	// ReservationEnergy sums a tenant's usage records at a site by
	// reservation (joules).
	ReservationEnergy(ctx context.Context, siteID, tenantID string, from, to time.Time) (map[string]int64, error)
	PowerMeterThrough(ctx context.Context) (time.Time, error)
	SetPowerMeterThrough(ctx context.Context, t time.Time) error
	// PutPermitWarning records a warning once per site, year and limit,
	// with an operator event; first reports whether it was new.
	PutPermitWarning(ctx context.Context, w PermitWarning) (first bool, err error)
	// PutFeedReadings stores supply-meter hours (replacing an hour's);
	// FeedReadings reads a site's in [from, to).
	PutFeedReadings(ctx context.Context, siteID string, rs []FeedReading, at time.Time) error
	FeedReadings(ctx context.Context, siteID string, from, to time.Time) ([]FeedReading, error)
}

// Tx runs functions in one write transaction.
type Tx interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// Service meters sites' energy and reports energy, water and emissions.
type Service struct {
	Store Store
	Tx    Tx
	Fleet *fleet.Snapshot
	Now   func() time.Time
	// Resolve finds a tenant by name or id as a principal may see it.
	Resolve func(ctx context.Context, p neocloud.Principal, ref string) (tenant.Tenant, error)
	// Settle and Lookback as the billing meter's.
	Settle, Lookback time.Duration
	Logger           *slog.Logger
	// Notify, where set, is called after a commit that wrote events.
	Notify func()
}

// NewService returns a service with the billing meter's settle and
// lookback.
func NewService(st Store, tx Tx, snap *fleet.Snapshot) *Service {
	return &Service{Store: st, Tx: tx, Fleet: snap, Now: time.Now, Settle: 5 * time.Minute, Lookback: 2 * time.Hour, Logger: slog.Default()}
}

func (s *Service) now() time.Time { return s.Now().UTC() }

// Meter derives every site's node energy for the complete hours up to
// through (again from Lookback before its mark, for late readings): each
// node's input energy of record hour by hour, as the billing meter derives
// an allocation's, summed per site. It reads and derives outside any
// transaction and writes the hours in a short one (writing them again is
// harmless: the same readings give the same sums).
func (s *Service) Meter(ctx context.Context, through time.Time) (int, error) {
	n := 0
	var hs []SiteHour
	var to time.Time
	err := func() error {
		mark, err := s.Store.PowerMeterThrough(ctx)
		if err != nil {
			return err
		}
		to = through.UTC().Truncate(time.Hour)
		if !mark.IsZero() && !to.After(mark) {
			to = time.Time{} // nothing new to meter
			return nil
		}
		from := mark.Add(-s.Lookback)
		if mark.IsZero() || to.Sub(from) > 31*24*time.Hour {
			from = to.Add(-31 * 24 * time.Hour) // a first pass looks back a month at most
		}
		skus, err := s.Store.SKUs(ctx)
		if err != nil {
			return err
		}
		bySKU := map[string]fleet.SKU{}
		for _, k := range skus {
			bySKU[k.Name] = k
		}
		readings, err := s.Store.EnergyReadingsAt(ctx, from.Add(-time.Hour), to.Add(time.Hour))
		if err != nil {
			return err
		}
		byNode := map[string][]agents.EnergyReading{}
		for _, r := range readings {
			if r.Reason == "hourly" {
				byNode[r.NodeID] = append(byNode[r.NodeID], r)
			}
		}
		type key struct {
			site string
			hour int64
		}
		sums := map[key]*SiteHour{}
		now := s.now()
		epoch := time.Unix(0, 0).UTC()
		s.Fleet.Each(fleet.NodeFilter{}, func(nd *fleet.Node) {
			rs := byNode[nd.ID]
			if len(rs) == 0 {
				return
			}
			k := bySKU[nd.SKU]
			m := billing.Metered{Allocation: sales.Allocation{ID: "node:" + nd.ID, NodeID: nd.ID, ReadyAt: &epoch}, NodeGPUs: k.GPUsPerNode, GPUShare: k.GPUPowerShare}
			for _, r := range billing.Derive(m, rs, from, to) {
				if r.EnergyJ == 0 && r.GPUEnergyJ == 0 {
					continue // no reading covers the hour
				}
				kk := key{nd.SiteID, r.Hour.Unix()}
				h := sums[kk]
				if h == nil {
					h = &SiteHour{SiteID: nd.SiteID, Hour: r.Hour, DerivedAt: now}
					sums[kk] = h
				}
				h.NodeEnergyJ += r.EnergyJ
				h.Nodes++
				if r.EnergySource == billing.SourceEstimated {
					h.EstimatedNodes++
				}
			}
		})
		hs = make([]SiteHour, 0, len(sums))
		for _, h := range sums {
			hs = append(hs, *h)
		}
		sort.Slice(hs, func(i, j int) bool {
			if !hs[i].Hour.Equal(hs[j].Hour) {
				return hs[i].Hour.Before(hs[j].Hour)
			}
			return hs[i].SiteID < hs[j].SiteID
		})
		n = len(hs)
		return nil
	}()
	if err != nil || to.IsZero() {
		return 0, err
	}
	return n, s.Tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.Store.PutSiteEnergy(ctx, hs); err != nil {
			return err
		}
		return s.Store.SetPowerMeterThrough(ctx, to)
	})
}

// Run meters every `every` until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.Meter(ctx, s.now().Add(-s.Settle))
			if err != nil && ctx.Err() == nil {
				s.Logger.Error("power meter", "err", err)
			}
			if n > 0 { // new hours metered: the permits' year to date moved
				if _, err := s.CheckPermits(ctx); err != nil && ctx.Err() == nil {
					s.Logger.Error("permit check", "err", err)
				}
			}
		}
	}
}
