// Package pricing owns the price book: list prices per SKU and class per
// GPU-hour, term discounts, volume tiers and the spot price, which follows
// site utilization. It is pure arithmetic over integer micro-units; storing
// prices and reading utilization belong to its callers.
package pricing

import (
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
)

// Micros is an amount of money in micro-units (1/1,000,000) of a currency.
type Micros = int64

// Tier is a discount in percent that applies from a threshold on: a term
// length in seconds (term discounts) or a number of GPUs (volume tiers).
type Tier struct {
	Min     int64   `json:"min" doc:"Threshold: seconds of term, or GPUs."`
	Percent float64 `json:"percent" minimum:"0" maximum:"100"`
}

// Price is one entry of the price book: what a SKU costs in a class from
// EffectiveAt until the next entry. Every change is a new entry, so the
// book is a time series billing integrates over.
type Price struct {
	ID            string    `json:"id"`
	SKU           string    `json:"sku"`
	Class         string    `json:"class"`
	EffectiveAt   time.Time `json:"effective_at"`
	ListMicros    Micros    `json:"list_micros" doc:"List price per GPU-hour, micro-units."`
	List          string    `json:"price_per_gpu_hour" doc:"List price per GPU-hour, in currency units."`
	TermDiscounts []Tier    `json:"term_discounts" doc:"Percent off for terms of at least min seconds; the largest reached applies."`
	VolumeTiers   []Tier    `json:"volume_tiers" doc:"Percent off for at least min GPUs; the largest reached applies."`
	SpotFloor     Micros    `json:"spot_floor_micros" doc:"Spot price per GPU-hour at an idle site."`
	SpotCeiling   Micros    `json:"spot_ceiling_micros" doc:"Spot price per GPU-hour at a full site."`
	Currency      string    `json:"currency"`
	CreatedBy     string    `json:"created_by"`
	CreatedAt     time.Time `json:"created_at"`
}

// Validate checks a price entry's fields.
func (p *Price) Validate() error {
	if p.ListMicros < 0 {
		return neocloud.Invalid("body.price_per_gpu_hour", "must not be negative")
	}
	if p.SpotFloor < 0 || p.SpotCeiling < p.SpotFloor {
		return neocloud.Invalid("body.spot_ceiling", "the spot ceiling must be at least the floor, and both non-negative")
	}
	for i, t := range p.TermDiscounts {
		if t.Min < 0 || t.Percent < 0 || t.Percent > 100 {
			return neocloud.Invalid(fmt.Sprintf("term_discounts[%d]", i), "min must be ≥ 0 and percent within 0–100")
		}
	}
	for i, t := range p.VolumeTiers {
		if t.Min < 0 || t.Percent < 0 || t.Percent > 100 {
			return neocloud.Invalid(fmt.Sprintf("volume_tiers[%d]", i), "min must be ≥ 0 and percent within 0–100")
		}
	}
	if len(p.Currency) != 3 {
		return neocloud.Invalid("body.currency", "must be an ISO 4217 code such as USD")
	}
	return nil
}

// best returns the largest percent whose threshold v reaches.
func best(tiers []Tier, v int64) float64 {
	pct := 0.0
	for _, t := range tiers {
		if v >= t.Min && t.Percent > pct {
			pct = t.Percent
		}
	}
	return pct
}

// SpotRate is the spot price per GPU-hour at a site utilization u in [0, 1]:
//
//	floor + (ceiling − floor) × u²
//
// rounded to a micro-unit. It stays near the floor while the site has room
// and rises steeply as it fills.
func (p *Price) SpotRate(u float64) Micros {
	u = min(1, max(0, u))
	return p.SpotFloor + Micros(math.Round(float64(p.SpotCeiling-p.SpotFloor)*u*u))
}

// Rate is the price per GPU-hour of gpus GPUs for a term d (0: open-ended,
// no term discount) at site utilization u: the spot rate for spot, else the
// list price less the larger of the term discount and the volume discount
// (they do not stack), rounded to a micro-unit.
func (p *Price) Rate(gpus int, d time.Duration, u float64) Micros {
	if p.Class == "spot" {
		return p.SpotRate(u)
	}
	pct := max(best(p.TermDiscounts, int64(d/time.Second)), best(p.VolumeTiers, int64(gpus)))
	return Micros(math.Round(float64(p.ListMicros) * (100 - pct) / 100))
}

// Total is rate × gpus × hours of d, rounded half up to a micro-unit once
// (TotalSeconds).
func Total(rate Micros, gpus int, d time.Duration) (Micros, error) {
	return TotalSeconds(rate, int64(gpus)*int64(d/time.Second))
}

// TotalSeconds is rate × GPU-seconds / 3600, rounded half up to a
// micro-unit once. It is computed exactly (a 200,000-GPU, 3-year total
// overflows int64 as an intermediate); a total beyond int64 is an error.
func TotalSeconds(rate Micros, gpuSeconds int64) (Micros, error) {
	n := new(big.Int).Mul(big.NewInt(rate), big.NewInt(gpuSeconds))
	q, r := new(big.Int).QuoRem(n, big.NewInt(3600), new(big.Int))
	if r.Mul(r, big.NewInt(2)).Cmp(big.NewInt(3600)) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, neocloud.Invalid("body.gpus", "the total exceeds what one quote or contract can carry")
	}
	return q.Int64(), nil
}

// At returns the entry in effect at t for sku and class from a book sorted
// by EffectiveAt, or false.
func At(book []Price, sku, class string, t time.Time) (Price, bool) {
	var out Price
	found := false
	for _, p := range book {
		if p.SKU == sku && p.Class == class && !p.EffectiveAt.After(t) {
			out, found = p, true
		}
	}
	return out, found
}

// Sort orders a book by SKU, class and EffectiveAt.
func Sort(book []Price) {
	sort.SliceStable(book, func(i, j int) bool {
		a, b := book[i], book[j]
		if a.SKU != b.SKU {
			return a.SKU < b.SKU
		}
		if a.Class != b.Class {
			return a.Class < b.Class
		}
		return a.EffectiveAt.Before(b.EffectiveAt)
	})
}

// ParseMicros reads a decimal amount in currency units ("2.05") as exact
// micro-units; more than six decimals is an error, never rounded.
func ParseMicros(field, s string) (Micros, error) {
	s = strings.TrimSpace(s)
	neg := strings.HasPrefix(s, "-")
	whole, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if whole == "" && frac == "" || len(frac) > 6 || strings.ContainsAny(whole+frac, "+-") {
		return 0, neocloud.Invalid(field, "%q is not an amount with at most six decimals", s)
	}
	if whole == "" {
		whole = "0"
	}
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	if err1 != nil || err2 != nil || w > math.MaxInt64/1_000_000-1 {
		return 0, neocloud.Invalid(field, "%q is not an amount with at most six decimals", s)
	}
	v := w*1e6 + f
	if neg {
		v = -v
	}
	return v, nil
}

// FormatMicros writes micro-units as a decimal amount with the trailing
// zeros of the fraction dropped (at least two decimals).
func FormatMicros(v Micros) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	s := fmt.Sprintf("%s%d.%06d", sign, v/1e6, v%1e6)
	for strings.HasSuffix(s, "0") && len(s)-strings.IndexByte(s, '.') > 3 {
		s = s[:len(s)-1]
	}
	return s
}
