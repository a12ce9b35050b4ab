package finance

import (
	"math/big"
	"time"

	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/pricing"
)

// year is the year depreciation and payback count in (365.25 days).
const year = 365.25 * 24 * time.Hour

// CostInputs are what a period's costs are computed from.
type CostInputs struct {
	Economics *fleet.Economics
	Nodes     int
	FirmMW    float64 // firm capacity, the base of facility capex and opex
	// FacilityWh is the site's facility energy in the period; EnergyPrice
	// its price per kWh in micro-units.
	FacilityWh        int64
	EnergyPriceMicros int64
	From, To          time.Time
	RecognizedMicros  int64
	GPUSeconds        map[string]int64 // utilization by category
	SoldRevenueMicros int64            // external classes' recognized revenue
	SpotRevenueMicros int64
	OnDemandRevMicros int64
	FleetGPUSeconds   int64
}

// UnitEconomics is a site's unit economics over a period.
type UnitEconomics struct {
	SiteID   string    `json:"site_id"`
	SiteName string    `json:"site_name"`
	Period   string    `json:"period"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Currency string    `json:"currency"`
	// Costs of the period: depreciation of nodes and facility, other
	// opex and energy.
	NodeDepreciation     Money  `json:"node_depreciation"`
	FacilityDepreciation Money  `json:"facility_depreciation"`
	Opex                 Money  `json:"opex"`
	Energy               Money  `json:"energy"`
	Cost                 Money  `json:"cost"`
	Revenue              Money  `json:"revenue" doc:"Recognized."`
	GrossMargin          Money  `json:"gross_margin"`
	GrossMarginPercent   string `json:"gross_margin_percent"`
	// DeliveredGPUHours: external tenants' and internal work's.
	DeliveredGPUHours     string `json:"delivered_gpu_hours"`
	CostPerDeliveredGPUHr string `json:"cost_per_delivered_gpu_hour"`
	// BreakEvenUtilization: the sold share of the fleet's GPU-hours at
	// which revenue, at the period's realized price, meets the cost.
	BreakEvenUtilization string `json:"break_even_utilization_percent"`
	SoldUtilization      string `json:"sold_utilization_percent"`
	// PaybackYears: capex ÷ the yearly rate of revenue less energy and
	// opex ("" when that is not positive).
	PaybackYears string `json:"payback_years,omitempty"`
	// Internal work: what it is charged at the transfer price, and what
	// its GPU-hours would have earned sold as spot (or on-demand where no
	// spot sold) at the period's realized price.
	InternalGPUHours    string `json:"internal_gpu_hours"`
	InternalTransfer    Money  `json:"internal_at_transfer_price"`
	InternalOpportunity Money  `json:"internal_opportunity_cost"`
	OpportunityPrice    string `json:"opportunity_price_per_gpu_hour" doc:"The realized spot (or on-demand) price it is valued at."`
	// RentOrTrain: rent when selling internal work's hours would have
	// earned more than its transfer value, train otherwise.
	RentOrTrain string `json:"rent_or_train" enum:"rent,train,"`
	Method      string `json:"method"`
}

// EconomicsMethod says how the figures are made.
const EconomicsMethod = "Node depreciation: nodes × capex per node, straight-line over its life (a year of 365.25 days), for the period's length; " +
	"facility: firm MW × capex per MW over its life; opex: firm MW × opex per MW-month (a month a twelfth of a year); energy: facility kWh × the site's " +
	"energy price. Delivered GPU-hours: external tenants' and internal work's. Break-even: cost ÷ (realized price per sold GPU-hour × fleet GPU-hours). " +
	"Payback: capex ÷ (revenue − energy − opex) a year. Internal work at its transfer price, and at the realized spot (else on-demand) price."

// micros parses an amount ("" is zero).
func micros(s string) int64 {
	if s == "" {
		return 0
	}
	m, _ := pricing.ParseMicros("", s)
	return m
}

// mulDiv is a × b ÷ c as a rational, without overflow.
func mulDiv(a, b, c int64) *big.Rat {
	return new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(a), big.NewInt(b)), big.NewInt(c))
}

// ratMicros rounds a rational amount of micro-units.
func ratMicros(r *big.Rat) int64 { return roundHalfEven(r) }

// ComputeEconomics makes a period's unit economics.
func ComputeEconomics(in CostInputs) UnitEconomics {
	e := UnitEconomics{From: in.From, To: in.To, Method: EconomicsMethod}
	ec := in.Economics
	if ec == nil {
		ec = &fleet.Economics{}
	}
	span := new(big.Rat).SetFrac64(int64(in.To.Sub(in.From)/time.Second), int64(year/time.Second)) // years
	firm := new(big.Rat).SetFloat64(in.FirmMW)
	if firm == nil {
		firm = new(big.Rat)
	}
	years := func(v float64) *big.Rat {
		r := new(big.Rat).SetFloat64(v)
		if r == nil || r.Sign() <= 0 {
			return nil
		}
		return r
	}
	var nodeDep, facDep, opex int64
	if life := years(ec.NodeLifeYears); life != nil {
		r := mulDiv(micros(ec.CapexPerNode), int64(in.Nodes), 1)
		nodeDep = ratMicros(r.Mul(r, new(big.Rat).Quo(span, life)))
	}
	if life := years(ec.FacilityLifeYears); life != nil {
		r := new(big.Rat).Mul(new(big.Rat).SetInt64(micros(ec.FacilityCapexPerMW)), firm)
		facDep = ratMicros(r.Mul(r, new(big.Rat).Quo(span, life)))
	}
	{
		r := new(big.Rat).Mul(new(big.Rat).SetInt64(micros(ec.OpexPerMWMonth)), firm)
		opex = ratMicros(r.Mul(r, new(big.Rat).Mul(span, big.NewRat(12, 1))))
	}
	energy := ratMicros(mulDiv(in.FacilityWh, in.EnergyPriceMicros, 1000))
	cost := nodeDep + facDep + opex + energy
	e.NodeDepreciation, e.FacilityDepreciation, e.Opex, e.Energy, e.Cost = money(nodeDep), money(facDep), money(opex), money(energy), money(cost)
	e.Revenue, e.GrossMargin = money(in.RecognizedMicros), money(in.RecognizedMicros-cost)
	e.GrossMarginPercent = signedPercent(in.RecognizedMicros-cost, in.RecognizedMicros)
	g := in.GPUSeconds
	sold := g[Lease] + g[Reserved] + g[OnDemand] + g[Spot]
	delivered := sold + g[Internal]
	e.DeliveredGPUHours = hours(delivered)
	if delivered > 0 {
		e.CostPerDeliveredGPUHr = pricing.FormatMicros(ratMicros(mulDiv(cost, 3600, delivered)))
	}
	e.SoldUtilization = percent(sold, in.FleetGPUSeconds)
	if sold > 0 && in.SoldRevenueMicros > 0 && in.FleetGPUSeconds > 0 {
		// cost ÷ (price per sold GPU-second × fleet GPU-seconds)
		be := new(big.Rat).SetFrac64(cost, 1)
		be.Mul(be, new(big.Rat).SetFrac64(sold, in.SoldRevenueMicros))
		be.Quo(be, new(big.Rat).SetInt64(in.FleetGPUSeconds))
		e.BreakEvenUtilization = be.Mul(be, big.NewRat(100, 1)).FloatString(2)
	}
	capex := mulDiv(micros(ec.CapexPerNode), int64(in.Nodes), 1)
	capex.Add(capex, new(big.Rat).Mul(new(big.Rat).SetInt64(micros(ec.FacilityCapexPerMW)), firm))
	if span.Sign() > 0 {
		yearly := new(big.Rat).Quo(new(big.Rat).SetInt64(in.RecognizedMicros-energy-opex), span)
		if yearly.Sign() > 0 && capex.Sign() > 0 {
			e.PaybackYears = new(big.Rat).Quo(capex, yearly).FloatString(2)
		}
	}
	// Internal work: transfer value against what it would have earned.
	e.InternalGPUHours = hours(g[Internal])
	e.InternalTransfer = money(ratMicros(mulDiv(micros(ec.TransferPricePerGPUHour), g[Internal], 3600)))
	var price int64 // micros per GPU-hour
	switch {
	case g[Spot] > 0 && in.SpotRevenueMicros > 0:
		price = ratMicros(mulDiv(in.SpotRevenueMicros, 3600, g[Spot]))
	case g[OnDemand] > 0 && in.OnDemandRevMicros > 0:
		price = ratMicros(mulDiv(in.OnDemandRevMicros, 3600, g[OnDemand]))
	}
	e.OpportunityPrice = pricing.FormatMicros(price)
	e.InternalOpportunity = money(ratMicros(mulDiv(price, g[Internal], 3600)))
	if g[Internal] > 0 {
		e.RentOrTrain = "train"
		if e.InternalOpportunity.Micros > e.InternalTransfer.Micros {
			e.RentOrTrain = "rent"
		}
	}
	return e
}

// signedPercent is part ÷ whole with two places, negative allowed.
func signedPercent(part, whole int64) string {
	if whole == 0 {
		return "0.00"
	}
	return mulDiv(part, 100, whole).FloatString(2)
}
