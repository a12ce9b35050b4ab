// Package billing meters and invoices. The meter derives usage records —
// one per (allocation, UTC hour), with a deterministic id — from the
// allocations (the meter of record, per second from ready to release) and
// the GPU energy counter readings; rating turns a tenant's records and
// contracts into invoice lines; closing a period numbers and freezes the
// invoices, after which only a numbered credit note corrects one.
//
// Money is int64 micro-units of the contract's currency. Rates are
// micro-units per GPU-hour (or per kWh); a line's amount is the exact
// rational sum of quantity × rate over everything it covers, rounded once,
// half to even, to a micro-unit. Tax is rounded the same way, once per
// invoice. An invoice is a pure function of the usage records and contract
// terms it covers: the same records in any order give the same bytes.
package billing

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/pricing"
)

// ID prefixes.
const (
	PrefixUsage   = "use_"
	PrefixInvoice = "inv_"
	PrefixCredit  = "crn_"
)

// Energy sources of a usage record.
const (
	// SourceNodeOOB: the node's input energy as its out-of-band controller
	// (BMC) metered it, shared by the allocation's GPUs.
	SourceNodeOOB = "node_oob"
	// SourceEstimated: the GPUs' own energy counters divided by the SKU's
	// GPU share of node power (GPUs draw about half a node's energy).
	SourceEstimated = "estimated"
	// SourceMixed: a span or line summing records of both.
	SourceMixed = "mixed"
)

// Line kinds.
const (
	LineCommitment = "commitment" // take-or-pay, on the contract's schedule
	LineUsage      = "usage"      // per second: on-demand, spot; informational for committed work
	LineOverage    = "overage"    // committed work beyond its commitment, where allowed
	LineEnergy     = "energy"     // power pass-through
	LineAdjustment = "adjustment" // usage of a closed period found after it closed
	LineCredit     = "credit"     // on a credit note
)

// UsageRecord is one allocation's use over one UTC hour (or the part of it
// the allocation was ready): GPU-seconds and energy. Its id is a hash of
// the allocation and the hour; a correction to a record already invoiced is
// a further revision (Rev > 0) holding the difference, billed as an
// adjustment on the next invoice.
type UsageRecord struct {
	ID            string    `json:"id"`
	AllocationID  string    `json:"allocation_id"`
	Hour          time.Time `json:"hour"`
	Rev           int       `json:"rev" doc:"0: the record; above: a correction holding the difference."`
	ReservationID string    `json:"reservation_id"`
	ContractID    string    `json:"contract_id"`
	TenantID      string    `json:"tenant_id"`
	Class         string    `json:"class"`
	SKU           string    `json:"sku"`
	SiteID        string    `json:"site_id"`
	NodeID        string    `json:"node_id"`
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	GPUs          int       `json:"gpus"`
	// ReservationGPUs is the reservation's size when metered: the price
	// book's volume tier of per-second work.
	ReservationGPUs int       `json:"reservation_gpus,omitempty"`
	GPUSeconds      int64     `json:"gpu_seconds"`
	GPUEnergyJ      int64     `json:"gpu_energy_j" doc:"The GPUs' own energy counters."`
	EnergyJ         int64     `json:"energy_j" doc:"Energy of record: node input energy (metered or estimated)."`
	EnergySource    string    `json:"energy_source" enum:"node_oob,estimated"`
	InvoiceID       string    `json:"invoice_id,omitempty"`
	DerivedAt       time.Time `json:"derived_at"`
	// Records is, for a span, how many hourly records it sums (0: a
	// record).
	Records int `json:"records,omitempty"`
}

// RecordID is the deterministic id of an allocation's record for an hour
// (rev 0) or of a correction to it (rev > 0).
func RecordID(allocationID string, hour time.Time, rev int) string {
	h := sha256.New()
	h.Write([]byte(allocationID))
	h.Write([]byte{0})
	h.Write([]byte(hour.UTC().Format(time.RFC3339)))
	if rev > 0 {
		h.Write([]byte{0, byte(rev >> 8), byte(rev)})
	}
	return PrefixUsage + crockford(h.Sum(nil))
}

// crockford writes the first 128 bits of a hash as 26 Crockford base32
// characters: the shape of every id.
func crockford(b []byte) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	hi, lo := binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[8:16])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// same reports whether two records hold the same measured values.
func (r UsageRecord) same(o UsageRecord) bool {
	return r.GPUSeconds == o.GPUSeconds && r.GPUEnergyJ == o.GPUEnergyJ && r.EnergyJ == o.EnergyJ &&
		r.Start.Equal(o.Start) && r.End.Equal(o.End) && r.GPUs == o.GPUs && r.EnergySource == o.EnergySource
}

// Party is a seller or a buyer as an invoice names it.
type Party struct {
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	TaxID   string `json:"tax_id,omitempty"`
}

// Seller is who issues the invoices: its name and address, and the
// prefixes of its invoice and credit note numbers.
type Seller struct {
	Party
	InvoicePrefix string `json:"invoice_prefix" doc:"e.g. INV-; numbers follow without gaps."`
	CreditPrefix  string `json:"credit_prefix" doc:"e.g. CN-."`
	PaymentTermsD int    `json:"payment_terms_days" doc:"Days from issue to due date."`
	// CloseAfterS: the automatic close finalizes a month this many seconds
	// after it ends (negative: never automatically).
	CloseAfterS int64 `json:"close_after_s"`
}

// DefaultSeller is the seller until the operator sets one.
func DefaultSeller() Seller {
	return Seller{Party: Party{Name: "neocloud operator"}, InvoicePrefix: "INV-", CreditPrefix: "CN-", PaymentTermsD: 30, CloseAfterS: 3600}
}

// Validate checks a seller's fields.
func (s *Seller) Validate() error {
	switch {
	case strings.TrimSpace(s.Name) == "":
		return neocloud.Invalid("body.name", "must not be empty")
	case s.InvoicePrefix == "" || s.CreditPrefix == "" || s.InvoicePrefix == s.CreditPrefix:
		return neocloud.Invalid("body.credit_prefix", "invoice and credit note prefixes must be set and differ")
	case s.PaymentTermsD < 0 || s.PaymentTermsD > 365:
		return neocloud.Invalid("body.payment_terms_days", "must be within 0–365")
	}
	return nil
}

// Profile is a tenant's billing details: the legal name and address
// invoices carry and the tax rate charged on them.
type Profile struct {
	TenantID  string `json:"tenant_id,omitempty" doc:"Set from the path."`
	LegalName string `json:"legal_name,omitempty"`
	Address   string `json:"address,omitempty"`
	TaxID     string `json:"tax_id,omitempty"`
	TaxRate   string `json:"tax_rate_percent,omitempty" doc:"Percent, e.g. 8.25; absent or 0: none."`
}

// taxRat returns the profile's tax rate as a fraction.
func (p Profile) taxRat() (*big.Rat, error) {
	s := p.TaxRate
	if s == "" {
		s = "0"
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() < 0 || r.Cmp(big.NewRat(100, 1)) > 0 || len(s) > 12 {
		return nil, neocloud.Invalid("body.tax_rate_percent", "%q is not a percent within 0–100", p.TaxRate)
	}
	return r.Quo(r, big.NewRat(100, 1)), nil
}

// Validate checks a profile's fields.
func (p *Profile) Validate() error {
	_, err := p.taxRat()
	return err
}

// Line is one line of an invoice or credit note.
type Line struct {
	N             int    `json:"n"`
	Kind          string `json:"kind" enum:"commitment,usage,overage,energy,adjustment,credit"`
	Description   string `json:"description"`
	ContractID    string `json:"contract_id,omitempty"`
	ReservationID string `json:"reservation_id,omitempty" doc:"The reservation, where the line covers one."`
	// Reservations counts the reservations of a line covering several
	// (on-demand and spot usage: one line per contract).
	Reservations int    `json:"reservations,omitempty"`
	SiteID       string `json:"site_id,omitempty" doc:"The site of an energy line covering several reservations."`
	Class        string `json:"class,omitempty"`
	// ServiceStart/End: the service period the line covers.
	ServiceStart time.Time `json:"service_start"`
	ServiceEnd   time.Time `json:"service_end"`
	Quantity     string    `json:"quantity" doc:"Decimal, in Unit."`
	Unit         string    `json:"unit" enum:"GPU-hour,kWh,amount"`
	// UnitPrice is the rate in currency units ("" where the line spans
	// several rates; Rates then lists them).
	UnitPrice    string     `json:"unit_price,omitempty"`
	Rates        []RatePart `json:"rates,omitempty"`
	GPUSeconds   int64      `json:"gpu_seconds,omitempty"`
	EnergyJ      int64      `json:"energy_j,omitempty"`
	EnergySource string     `json:"energy_source,omitempty" doc:"node_oob, estimated, or mixed: which energy the line uses."`
	Records      int        `json:"records,omitempty" doc:"Usage records behind the line."`
	AmountMicros int64      `json:"amount_micros"`
	Amount       string     `json:"amount"`
	// ChargeKey names a commitment charge (contract and month), billed once.
	ChargeKey string `json:"charge_key,omitempty"`
	// credit is the availability behind a credit line (not serialized:
	// the store keeps it apart, for lineage).
	credit *Credit
}

// RatePart is the share of a line billed at one rate.
type RatePart struct {
	RateMicros int64  `json:"rate_micros"`
	Rate       string `json:"rate"`
	Quantity   string `json:"quantity"`
}

// Invoice is a tenant's bill for a period in one currency, or a credit note
// correcting one. Draft invoices have no number and change as usage
// arrives; a finalized one never changes.
type Invoice struct {
	ID             string    `json:"id"`
	Number         string    `json:"number,omitempty" doc:"Gapless per seller and series; absent on a draft."`
	Kind           string    `json:"kind" enum:"invoice,credit_note"`
	State          string    `json:"state" enum:"draft,final"`
	Seller         Party     `json:"seller"`
	Buyer          Party     `json:"buyer"`
	TenantID       string    `json:"tenant_id"`
	TenantName     string    `json:"tenant_name"`
	Period         string    `json:"period"`
	PeriodStart    time.Time `json:"period_start"`
	PeriodEnd      time.Time `json:"period_end"`
	Currency       string    `json:"currency"`
	Lines          []Line    `json:"lines"`
	SubtotalMicros int64     `json:"subtotal_micros"`
	Subtotal       string    `json:"subtotal"`
	TaxRate        string    `json:"tax_rate_percent"`
	TaxMicros      int64     `json:"tax_micros"`
	Tax            string    `json:"tax"`
	TotalMicros    int64     `json:"total_micros"`
	Total          string    `json:"total"`
	IssuedAt       time.Time `json:"issued_at"`
	DueAt          time.Time `json:"due_at"`
	// RefersTo and Reason: a credit note's invoice and why it was issued.
	RefersTo       string `json:"refers_to,omitempty"`
	RefersToNumber string `json:"refers_to_number,omitempty"`
	Reason         string `json:"reason,omitempty"`
	// CreditedMicros: credit notes issued against this invoice so far
	// (read with the invoice; not part of its frozen body).
	CreditedMicros int64 `json:"credited_micros,omitempty"`
}

// InvoiceID is the deterministic id of a tenant's invoice for a period and
// currency: closing twice can never make two.
func InvoiceID(tenantID, period, currency string) string {
	h := sha256.Sum256([]byte(tenantID + "\x00" + period + "\x00" + currency))
	return PrefixInvoice + crockford(h[:])
}

// Period is a closed (or closing) billing month.
type Period struct {
	Period   string    `json:"period"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ClosedAt time.Time `json:"closed_at"`
	ClosedBy string    `json:"closed_by"`
	Invoices int       `json:"invoices"`
}

// Month parses a billing period: one UTC month, "2027-01".
func Month(field, s string) (start, end time.Time, err error) {
	start, end, err = neocloud.ParsePeriod(s)
	if err != nil || len(s) != 7 {
		return time.Time{}, time.Time{}, neocloud.Invalid(field, "%q is not a month such as 2027-01 (invoices are monthly)", s)
	}
	return start, end, nil
}

// MonthOf names the UTC month t falls in.
func MonthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// RoundHalfEven rounds r to the nearest integer, ties to even: the one
// rounding of money and energy.
func RoundHalfEven(r *big.Rat) int64 { return roundHalfEven(r) }

// roundHalfEven rounds r to the nearest integer, ties to even.
func roundHalfEven(r *big.Rat) int64 {
	num, den := new(big.Int).Set(r.Num()), r.Denom()
	neg := num.Sign() < 0
	num.Abs(num)
	q, m := new(big.Int).QuoRem(num, den, new(big.Int))
	switch c := new(big.Int).Mul(m, big.NewInt(2)).Cmp(den); {
	case c > 0, c == 0 && q.Bit(0) == 1:
		q.Add(q, big.NewInt(1))
	}
	if neg {
		q.Neg(q)
	}
	return q.Int64()
}

// money formats micro-units as currency units.
func money(v int64) string { return pricing.FormatMicros(v) }

// hours formats seconds as hours with four decimals (rounded half to even).
func hours(seconds int64) string {
	if seconds > math.MaxInt64/25 || seconds < -math.MaxInt64/25 {
		return decimal(big.NewRat(seconds, 3600), 4)
	}
	return fixed(divHalfEven(seconds*25, 9), 4) // × 10⁴ / 3600
}

// kwh formats joules as kWh with three decimals.
func kwh(j int64) string { return decimal(big.NewRat(j, 3_600_000), 3) }

// decimal formats r with places decimals, half to even.
func decimal(r *big.Rat, places int) string {
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places)), nil)
	return fixed(roundHalfEven(new(big.Rat).Mul(r, new(big.Rat).SetInt(scale))), places)
}

// fixed writes v × 10^-places.
func fixed(v int64, places int) string {
	sign := ""
	if v < 0 {
		sign = "-"
	}
	s := strconv.FormatUint(uint64(v), 10)
	if v < 0 {
		s = strconv.FormatUint(uint64(-v), 10)
	}
	for len(s) <= places {
		s = "0" + s
	}
	return sign + s[:len(s)-places] + "." + s[len(s)-places:]
}

// divHalfEven is n / d (d > 0) rounded half to even.
func divHalfEven(n, d int64) int64 {
	neg := n < 0
	if neg {
		n = -n
	}
	q, r := n/d, n%d
	if 2*r > d || (2*r == d && q%2 == 1) {
		q++
	}
	if neg {
		return -q
	}
	return q
}
