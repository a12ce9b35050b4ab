package billing

import (
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"time"

	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
)

// SpotPoint is the spot price of a SKU at a site from At until the next
// point.
type SpotPoint struct {
	SiteID     string    `json:"site_id"`
	SKU        string    `json:"sku"`
	At         time.Time `json:"at"`
	RateMicros int64     `json:"rate_micros"`
}

// SiteEnergy is what power pass-through needs of a site: its PUE and its
// energy price per kWh (micro-units), both exact decimals.
type SiteEnergy struct {
	PUE        string // e.g. "1.25"; "" means 1
	RateMicros int64  // per kWh of facility energy
}

// ContractWork is a contract with its reservations.
type ContractWork struct {
	sales.Contract
	Reservations []sales.Reservation
}

// RateInput is everything one tenant's invoice for a period depends on.
type RateInput struct {
	TenantID    string
	TenantName  string
	Profile     Profile
	Seller      Seller
	Period      string
	Start, End  time.Time
	Contracts   []ContractWork
	Records     []UsageRecord // not yet invoiced, hours before End
	Prices      []pricing.Price
	Spot        []SpotPoint
	Sites       map[string]SiteEnergy
	Billed      map[string]bool // commitment charges already invoiced
	Credits     []Credit        // SLA credits of the period's service
	IssuedAt    time.Time
	Draft       bool
	KeepRecords bool // keep each line's record ids (for closing)
}

// Rate turns a tenant's usage records and contracts into its invoices for
// the period, one per currency (none when there is nothing to bill):
//
//   - lease and reserved: the commitment of each month, from each of the
//     contract's reservations' GPUs × the hours of the month it spans,
//     billed in advance (the next month's on this invoice) or in arrears;
//     the GPU-hours delivered, for information; overage beyond the
//     month's commitment at the contract's overage rate, where it has one.
//   - on_demand: per second at the price book's rate in force each second
//     (before the first entry: the contract's rate).
//   - spot: per second over the site's spot price series.
//   - power pass-through: energy of record × PUE × the site's energy rate.
//   - records of hours before the period (found after their period closed):
//     adjustment lines, rated the same way.
//   - internal work: never invoiced.
//   - SLA credits of the period's service: a negative line per
//     reservation whose availability fell below a tier.
//
// Each line's amount is rounded once, half to even; tax once on the
// subtotal. The result depends only on the inputs' content, not their
// order.
func Rate(in RateInput) ([]Invoice, error) {
	taxRate, err := in.Profile.taxRat()
	if err != nil {
		return nil, err
	}
	contracts := append([]ContractWork(nil), in.Contracts...)
	sort.Slice(contracts, func(i, j int) bool { return contracts[i].ID < contracts[j].ID })
	byContract := map[string][]*UsageRecord{}
	for i := range in.Records {
		r := &in.Records[i]
		byContract[r.ContractID] = append(byContract[r.ContractID], r)
	}
	lines := map[string][]Line{} // by currency
	for _, c := range contracts {
		if c.Kind == placement.ClassInternal {
			continue
		}
		recs := byContract[c.ID]
		sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
		var ls []Line
		switch c.Kind {
		case placement.ClassLease, placement.ClassReserved:
			ls = append(ls, commitments(in, c)...)
			ls = append(ls, committedUsage(in, c, recs)...)
		default:
			ls = append(ls, perSecond(in, c, recs)...)
		}
		if c.Terms.PowerPassThrough {
			ls = append(ls, energy(in, c, recs)...)
		}
		cur := c.Terms.Currency
		if cur == "" {
			cur = "USD"
		}
		lines[cur] = append(lines[cur], ls...)
	}
	byID := map[string]ContractWork{}
	for _, c := range contracts {
		byID[c.ID] = c
	}
	for cur, ls := range creditLines(in.Credits, byID) {
		lines[cur] = append(lines[cur], ls...)
	}
	currencies := make([]string, 0, len(lines))
	for cur := range lines {
		currencies = append(currencies, cur)
	}
	sort.Strings(currencies)
	var out []Invoice
	for _, cur := range currencies {
		ls := lines[cur]
		if len(ls) == 0 {
			continue
		}
		inv := Invoice{ID: InvoiceID(in.TenantID, in.Period, cur), Kind: "invoice", State: "final", Seller: in.Seller.Party,
			Buyer: Party{Name: in.Profile.LegalName, Address: in.Profile.Address, TaxID: in.Profile.TaxID}, TenantID: in.TenantID,
			TenantName: in.TenantName, Period: in.Period, PeriodStart: in.Start, PeriodEnd: in.End, Currency: cur,
			IssuedAt: in.IssuedAt, DueAt: in.IssuedAt.AddDate(0, 0, in.Seller.PaymentTermsD), TaxRate: taxPercent(in.Profile)}
		if inv.Buyer.Name == "" {
			inv.Buyer.Name = in.TenantName
		}
		if in.Draft {
			inv.State = "draft"
		}
		for i := range ls {
			ls[i].N = i + 1
			ls[i].Amount = money(ls[i].AmountMicros)
			inv.SubtotalMicros += ls[i].AmountMicros
			if !in.KeepRecords {
				ls[i].credit = nil
			}
		}
		inv.Lines = ls
		finish(&inv, taxRate)
		out = append(out, inv)
	}
	return out, nil
}

// finish computes an invoice's tax and total from its subtotal.
func finish(inv *Invoice, taxRate *big.Rat) {
	inv.TaxMicros = roundHalfEven(new(big.Rat).Mul(big.NewRat(inv.SubtotalMicros, 1), taxRate))
	inv.TotalMicros = inv.SubtotalMicros + inv.TaxMicros
	inv.Subtotal, inv.Tax, inv.Total = money(inv.SubtotalMicros), money(inv.TaxMicros), money(inv.TotalMicros)
}

func taxPercent(p Profile) string {
	if p.TaxRate == "" {
		return "0"
	}
	return p.TaxRate
}

// committedSeconds is the GPU-seconds of a contract's reservations within
// [from, to): what its commitment covers.
func committedSeconds(c ContractWork, from, to time.Time) int64 {
	var n int64
	for _, r := range c.Reservations {
		if r.State == sales.ReservationCancelled || r.State == sales.ReservationFailed || r.Shape.End == nil {
			continue
		}
		s, e := maxTime(r.Shape.Start, from), minTime(*r.Shape.End, to)
		if e.After(s) {
			n += int64(r.Shape.GPUs) * int64(e.Sub(s)/time.Second)
		}
	}
	return n
}

// commitments are the take-or-pay charges due on this invoice: every month
// of the contract up to the period's (in arrears) or the next one (in
// advance) not yet billed.
func commitments(in RateInput, c ContractWork) []Line {
	last := in.Start
	advance := c.Terms.BillingSchedule == "monthly_in_advance"
	if advance {
		last = in.End
	}
	var out []Line
	for m := c.Start.UTC(); ; {
		ms := time.Date(m.Year(), m.Month(), 1, 0, 0, 0, 0, time.UTC)
		if ms.After(last) || (c.End != nil && !ms.Before(*c.End)) {
			break
		}
		me := ms.AddDate(0, 1, 0)
		m = me
		key := "commit:" + c.ID + ":" + MonthOf(ms)
		if in.Billed[key] {
			continue
		}
		gs := committedSeconds(c, ms, me)
		if gs == 0 {
			continue
		}
		amount := roundHalfEven(new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(c.Terms.RateMicros), big.NewInt(gs)), big.NewInt(3600)))
		sched := "in arrears"
		if advance {
			sched = "in advance"
		}
		out = append(out, Line{Kind: LineCommitment, ContractID: c.ID, Class: string(c.Kind),
			Description:  fmt.Sprintf("%s %s commitment, %s (%s)", c.SKU, c.Kind, ms.Format("January 2006"), sched),
			ServiceStart: maxTime(ms, c.Start.UTC()), ServiceEnd: me, Quantity: hours(gs), Unit: "GPU-hour",
			UnitPrice: money(c.Terms.RateMicros), GPUSeconds: gs, AmountMicros: amount, ChargeKey: key})
		if c.End != nil && me.After(*c.End) {
			out[len(out)-1].ServiceEnd = c.End.UTC()
		}
	}
	return out
}

// group gathers records by a key (a reservation, a site, or none),
// in-period records apart from late ones (adjustments), in a fixed order.
type group struct {
	key          string
	reservation  string // the one reservation of the group's records ("" if several)
	reservations int
	late         bool
	month        string
	recs         []*UsageRecord
}

func byReservation(r *UsageRecord) string { return r.ReservationID }
func bySite(r *UsageRecord) string        { return r.SiteID }
func together(*UsageRecord) string        { return "" }

func groups(in RateInput, recs []*UsageRecord, key func(*UsageRecord) string) []*group {
	idx := map[string]*group{}
	seen := map[*group]map[string]bool{}
	var out []*group
	for _, r := range recs {
		late := r.Hour.Before(in.Start)
		month := ""
		if late {
			month = MonthOf(r.Hour)
		}
		k := key(r) + "|" + month
		g := idx[k]
		if g == nil {
			g = &group{key: key(r), late: late, month: month}
			idx[k] = g
			seen[g] = map[string]bool{}
			out = append(out, g)
		}
		if !seen[g][r.ReservationID] {
			seen[g][r.ReservationID] = true
			g.reservations++
			g.reservation = r.ReservationID
		}
		g.recs = append(g.recs, r)
	}
	for _, g := range out {
		if g.reservations > 1 {
			g.reservation = ""
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].late != out[j].late {
			return !out[i].late
		}
		if out[i].month != out[j].month {
			return out[i].month < out[j].month
		}
		return out[i].key < out[j].key
	})
	return out
}

// span is the group's service interval, GPU-seconds and record count (a
// span of records counts as the records it sums).
func (g *group) span() (time.Time, time.Time, int64, int) {
	var s, e time.Time
	var gs int64
	n := 0
	for i, r := range g.recs {
		if i == 0 || r.Start.Before(s) {
			s = r.Start
		}
		if i == 0 || r.End.After(e) {
			e = r.End
		}
		gs += r.GPUSeconds
		n += max(1, r.Records)
	}
	return s, e, gs, n
}

// line starts a line of the group: its contract, reservation (or how
// many) and class.
func (g *group) line(kind string, c ContractWork) Line {
	l := Line{Kind: kind, ContractID: c.ID, ReservationID: g.reservation, Class: string(c.Kind)}
	if g.reservations > 1 {
		l.Reservations = g.reservations
	}
	return l
}

// committedUsage is the GPU-hours a lease or reservation delivered (for
// information: the commitment pays for them) and any overage.
func committedUsage(in RateInput, c ContractWork, recs []*UsageRecord) []Line {
	var out []Line
	for _, g := range groups(in, recs, byReservation) {
		s, e, gs, n := g.span()
		l := g.line(LineUsage, c)
		l.Description = fmt.Sprintf("%s GPU-hours delivered, included in the commitment", c.SKU)
		l.ServiceStart, l.ServiceEnd, l.Quantity, l.Unit, l.UnitPrice, l.GPUSeconds, l.Records = s, e, hours(gs), "GPU-hour", money(0), gs, n
		if g.late {
			l.Kind, l.Description = LineAdjustment, fmt.Sprintf("%s GPU-hours of %s found after it closed, included in the commitment", c.SKU, g.month)
		}
		out = append(out, l)
	}
	if c.Terms.OverageRateMicros <= 0 {
		return out
	}
	// Overage: per month of the period, use beyond the commitment.
	used := map[string]int64{}
	for _, r := range recs {
		if !r.Hour.Before(in.Start) {
			used[MonthOf(r.Hour)] += r.GPUSeconds
		}
	}
	months := make([]string, 0, len(used))
	for m := range used {
		months = append(months, m)
	}
	sort.Strings(months)
	for _, m := range months {
		ms, me, _ := Month("", m)
		over := used[m] - committedSeconds(c, ms, me)
		if over <= 0 {
			continue
		}
		amount := roundHalfEven(new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(c.Terms.OverageRateMicros), big.NewInt(over)), big.NewInt(3600)))
		out = append(out, Line{Kind: LineOverage, ContractID: c.ID, Class: string(c.Kind), Description: fmt.Sprintf("%s GPU-hours beyond the commitment, %s", c.SKU, m),
			ServiceStart: ms, ServiceEnd: me, Quantity: hours(over), Unit: "GPU-hour", UnitPrice: money(c.Terms.OverageRateMicros), GPUSeconds: over, AmountMicros: amount})
	}
	return out
}

// segment is a rate in force from At.
type segment struct {
	at   time.Time
	rate int64
}

// series returns the rates in force for a contract's per-second work at
// a site (spot; "": the contract's first reservation's) for a reservation
// of gpus (on-demand volume tiers), ascending, starting with the
// contract's own rate at the beginning of time.
func series(in RateInput, c ContractWork, site string, gpus int) []segment {
	if site == "" && len(c.Reservations) > 0 {
		site = c.Reservations[0].Shape.Site
	}
	out := []segment{{time.Time{}, c.Terms.RateMicros}}
	if c.Kind == placement.ClassSpot {
		var pts []SpotPoint
		for _, p := range in.Spot {
			if p.SKU == c.SKU && (site == "" || p.SiteID == site) {
				pts = append(pts, p)
			}
		}
		sort.Slice(pts, func(i, j int) bool {
			if !pts[i].At.Equal(pts[j].At) {
				return pts[i].At.Before(pts[j].At)
			}
			return pts[i].RateMicros < pts[j].RateMicros // a total order, whatever order they come in
		})
		for _, p := range pts {
			out = addSegment(out, segment{p.At.UTC().Truncate(time.Second), p.RateMicros})
		}
		return out
	}
	var book []pricing.Price
	for _, p := range in.Prices {
		if p.SKU == c.SKU && p.Class == string(c.Kind) {
			book = append(book, p)
		}
	}
	sort.Slice(book, func(i, j int) bool {
		a, b := book[i], book[j]
		switch {
		case !a.EffectiveAt.Equal(b.EffectiveAt):
			return a.EffectiveAt.Before(b.EffectiveAt)
		case a.ID != b.ID:
			return a.ID < b.ID
		}
		return a.ListMicros < b.ListMicros // a total order, whatever order they come in
	})
	for _, p := range book {
		out = addSegment(out, segment{p.EffectiveAt.UTC().Truncate(time.Second), p.Rate(gpus, 0, 0)})
	}
	return out
}

// addSegment appends a rate in force from a whole second; of two changes
// within one second, the later one holds from that second.
func addSegment(segs []segment, sg segment) []segment {
	if n := len(segs); n > 0 && segs[n-1].at.Equal(sg.at) {
		segs[n-1] = sg
		return segs
	}
	return append(segs, sg)
}

// perSecond bills on-demand and spot work per second at the rate in force
// each second (by each reservation's size, for volume tiers), one line per
// contract (and per closed month for late records), as clouds bill
// instance-hours; `usage show --by reservation` and the line's lineage
// break it down.
func perSecond(in RateInput, c ContractWork, recs []*UsageRecord) []Line {
	rsvGPUs := map[string]int{}
	for _, r := range c.Reservations {
		rsvGPUs[r.ID] = r.Shape.GPUs
	}
	var out []Line
	type seriesKey struct {
		site string
		gpus int
	}
	bySize := map[seriesKey][]segment{} // the series by site (spot) and reservation size (volume tiers)
	for _, g := range groups(in, recs, together) {
		byRate := map[int64]int64{} // rate → GPU-seconds
		// Per series, GPU-seconds in each segment: the partial segments at
		// a record's ends, and (as a difference array) the GPUs covering
		// whole segments between them — a record costs two binary searches
		// however many rate changes it spans.
		type tally struct{ part, diff []int64 }
		tallies := map[seriesKey]*tally{}
		for _, r := range g.recs {
			if r.GPUSeconds == 0 {
				continue
			}
			size := r.ReservationGPUs
			if size == 0 { // metered before records carried it
				size = rsvGPUs[r.ReservationID]
			}
			sk := seriesKey{r.SiteID, size}
			segs, ok := bySize[sk]
			if !ok {
				segs = series(in, c, r.SiteID, size)
				bySize[sk] = segs
			}
			// A correction (rev > 0) holds a difference: billed at the rate
			// in force at its start.
			if r.Rev > 0 || r.GPUs <= 0 {
				byRate[rateAt(segs, r.Start)] += r.GPUSeconds
				continue
			}
			if !r.End.After(r.Start) {
				continue
			}
			tl := tallies[sk]
			if tl == nil {
				tl = &tally{make([]int64, len(segs)), make([]int64, len(segs)+1)}
				tallies[sk] = tl
			}
			// The segments the record spans: from the one in force at its
			// start (i) to the last that begins before its end (j).
			i := max(0, sort.Search(len(segs), func(k int) bool { return segs[k].at.After(r.Start) })-1)
			j := sort.Search(len(segs), func(k int) bool { return !segs[k].at.Before(r.End) }) - 1
			gpus := int64(r.GPUs)
			if i >= j {
				tl.part[i] += seconds(r.Start, r.End) * gpus
				continue
			}
			tl.part[i] += seconds(r.Start, segs[i+1].at) * gpus
			tl.part[j] += seconds(segs[j].at, r.End) * gpus
			tl.diff[i+1] += gpus
			tl.diff[j] -= gpus
		}
		for sk, tl := range tallies {
			segs := bySize[sk]
			var cover int64
			for k := range segs {
				cover += tl.diff[k]
				n := tl.part[k]
				if cover != 0 {
					n += cover * seconds(segs[k].at, segs[k+1].at)
				}
				if n != 0 {
					byRate[segs[k].rate] += n
				}
			}
		}
		s, e, gs, n := g.span()
		num := new(big.Int)
		rates := make([]int64, 0, len(byRate))
		for rate := range byRate {
			rates = append(rates, rate)
		}
		sort.Slice(rates, func(i, j int) bool { return rates[i] < rates[j] })
		var parts []RatePart
		for _, rate := range rates {
			num.Add(num, new(big.Int).Mul(big.NewInt(rate), big.NewInt(byRate[rate])))
			parts = append(parts, RatePart{RateMicros: rate, Rate: money(rate), Quantity: hours(byRate[rate])})
		}
		amount := roundHalfEven(new(big.Rat).SetFrac(num, big.NewInt(3600)))
		what := "on-demand"
		if c.Kind == placement.ClassSpot {
			what = "spot"
		}
		l := g.line(LineUsage, c)
		l.Description = fmt.Sprintf("%s %s GPU-hours, per second", c.SKU, what)
		if g.reservations > 1 {
			l.Description += fmt.Sprintf(", %d reservations", g.reservations)
		}
		l.ServiceStart, l.ServiceEnd, l.Quantity, l.Unit, l.GPUSeconds, l.AmountMicros, l.Records = s, e, hours(gs), "GPU-hour", gs, amount, n
		if len(parts) == 1 {
			l.UnitPrice = parts[0].Rate
		} else {
			l.Rates = parts
		}
		if g.late {
			l.Kind, l.Description = LineAdjustment, fmt.Sprintf("%s %s GPU-hours of %s found after it closed", c.SKU, what, g.month)
		}
		out = append(out, l)
	}
	return out
}

// seconds is the whole seconds from a to b.
func seconds(a, b time.Time) int64 { return int64(b.Sub(a) / time.Second) }

func rateAt(segs []segment, t time.Time) int64 {
	i := sort.Search(len(segs), func(i int) bool { return segs[i].at.After(t) }) - 1
	return segs[max(0, i)].rate
}

// energy bills a contract's energy of record at cost: kWh × PUE × the
// site's energy rate, one line per reservation of committed work, per
// site of per-second work (and per closed month).
func energy(in RateInput, c ContractWork, recs []*UsageRecord) []Line {
	key := byReservation
	if c.Kind != placement.ClassLease && c.Kind != placement.ClassReserved {
		key = bySite
	}
	var out []Line
	for _, g := range groups(in, recs, key) {
		var j int64
		sources := map[string]bool{}
		site := ""
		for _, r := range g.recs {
			j += r.EnergyJ
			if r.EnergySource == SourceMixed {
				sources[SourceNodeOOB], sources[SourceEstimated] = true, true
			} else {
				sources[r.EnergySource] = true
			}
			site = r.SiteID
		}
		se := in.Sites[site]
		pue := big.NewRat(1, 1)
		if se.PUE != "" {
			if p, ok := new(big.Rat).SetString(se.PUE); ok && p.Sign() > 0 {
				pue = p
			}
		}
		// micros = J / 3.6e6 × PUE × rate
		amt := new(big.Rat).Mul(big.NewRat(j, 3_600_000), pue)
		amt.Mul(amt, big.NewRat(se.RateMicros, 1))
		src := SourceEstimated
		switch {
		case len(sources) > 1:
			src = SourceMixed
		case sources[SourceNodeOOB]:
			src = SourceNodeOOB
		}
		s, e, _, n := g.span()
		facility := new(big.Rat).Mul(big.NewRat(j, 3_600_000), pue)
		l := g.line(LineEnergy, c)
		if g.reservations > 1 {
			l.SiteID = site
		}
		l.Description = fmt.Sprintf("Energy pass-through: %s kWh node energy (%s) × PUE %s", kwh(j), sourceWords(src), pueString(se.PUE))
		l.ServiceStart, l.ServiceEnd, l.Quantity, l.Unit, l.UnitPrice = s, e, decimal(facility, 3), "kWh", money(se.RateMicros)
		l.EnergyJ, l.EnergySource, l.AmountMicros, l.Records = j, src, roundHalfEven(amt), n
		if g.late {
			l.Kind = LineAdjustment
			l.Description = fmt.Sprintf("Energy of %s found after it closed: %s kWh node energy (%s) × PUE %s", g.month, kwh(j), sourceWords(src), pueString(se.PUE))
		}
		out = append(out, l)
	}
	return out
}

func pueString(s string) string {
	if s == "" {
		return "1"
	}
	return s
}

func sourceWords(src string) string {
	switch src {
	case SourceNodeOOB:
		return "metered at the node's input"
	case SourceEstimated:
		return "estimated from GPU energy"
	}
	return "partly metered, partly estimated"
}

// PUEString writes a site's PUE as the exact decimal billing uses.
func PUEString(pue float64) string {
	if pue <= 0 {
		return ""
	}
	return strconv.FormatFloat(pue, 'f', -1, 64)
}
