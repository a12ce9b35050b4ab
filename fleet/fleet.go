// Package fleet owns what the control plane knows of its hardware: sites
// with their topology and other hierarchies (power, cooling), SKUs, nodes
// and their GPUs. A node has three separate axes — lifecycle, health and a
// cordon flag — and a spare flag; whether it is in use is derived from
// allocations, never stored here. The package parses and validates site
// specs, generates Colossus-shaped ones, computes what applying a spec
// changes, and keeps the in-memory snapshot that fast reads (and the placer)
// use. It holds no SQL and no HTTP.
package fleet

import (
	"time"

	"github.com/neocloud/neocloud"
)

// ID prefixes of fleet objects.
const (
	PrefixSite = "site_"
	PrefixNode = "node_"
)

// Lifecycle is where a node is in its life. Transitions go through
// Transition only.
type Lifecycle string

const (
	LifecycleProvisioning Lifecycle = "provisioning"
	LifecycleBurnIn       Lifecycle = "burn_in"
	LifecycleAvailable    Lifecycle = "available"
	LifecycleMaintenance  Lifecycle = "maintenance"
	LifecycleRepair       Lifecycle = "repair"
	LifecycleSanitizing   Lifecycle = "sanitizing"
	LifecycleRetired      Lifecycle = "retired"
)

// Lifecycles lists every lifecycle state.
var Lifecycles = []Lifecycle{LifecycleProvisioning, LifecycleBurnIn, LifecycleAvailable, LifecycleMaintenance, LifecycleRepair, LifecycleSanitizing, LifecycleRetired}

// transitions is the lifecycle state machine: the states each state may move
// to. Repair never leads straight back to service, only through burn-in;
// retired is left only when a spec admits the node again. burn_in may go to
// available because a new node has held no tenant's data: that a node which
// served a tenant is sanitized before the next one (invariant 6) is decided
// from its allocation history, which the remediation flow checks.
var transitions = map[Lifecycle][]Lifecycle{
	LifecycleProvisioning: {LifecycleBurnIn, LifecycleAvailable, LifecycleRepair, LifecycleRetired},
	LifecycleBurnIn:       {LifecycleAvailable, LifecycleSanitizing, LifecycleRepair, LifecycleRetired},
	LifecycleAvailable:    {LifecycleMaintenance, LifecycleRepair, LifecycleSanitizing, LifecycleRetired},
	LifecycleMaintenance:  {LifecycleAvailable, LifecycleBurnIn, LifecycleRepair, LifecycleSanitizing, LifecycleRetired},
	LifecycleRepair:       {LifecycleBurnIn, LifecycleMaintenance, LifecycleRetired},
	LifecycleSanitizing:   {LifecycleAvailable, LifecycleRepair, LifecycleRetired},
	LifecycleRetired:      {LifecycleProvisioning},
}

// Valid reports whether l is a lifecycle state.
func (l Lifecycle) Valid() bool {
	_, ok := transitions[l]
	return ok
}

// CanTransition reports whether a node may move from one state to another.
func CanTransition(from, to Lifecycle) bool {
	for _, t := range transitions[from] {
		if t == to {
			return true
		}
	}
	return false
}

// Transition checks a lifecycle move; an illegal one is a conflict naming
// the current state.
func Transition(from, to Lifecycle) error {
	if !to.Valid() {
		return neocloud.Invalid("lifecycle", "unknown lifecycle state %q", to)
	}
	if !CanTransition(from, to) {
		return neocloud.Conflict(string(from), "a node in %s cannot move to %s", from, to)
	}
	return nil
}

// Health is what the control plane believes of a node's hardware, with
// reasons; it is separate from lifecycle.
type Health string

const (
	HealthOK          Health = "ok"
	HealthDegraded    Health = "degraded"
	HealthUnreachable Health = "unreachable"
	HealthFailed      Health = "failed"
)

// Valid reports whether h is a health state.
func (h Health) Valid() bool {
	switch h {
	case HealthOK, HealthDegraded, HealthUnreachable, HealthFailed:
		return true
	}
	return false
}

// Site is a data center. Levels name its network topology from the top
// (e.g. hall, pod, su, rack); nodes hang below the last level. Hierarchies
// name other trees a node also belongs to (power: feed, hall, busway).
type Site struct {
	ID          string              `json:"id"`
	Name        string              `json:"name"`
	Region      string              `json:"region"`
	Timezone    string              `json:"timezone"`
	Levels      []string            `json:"levels"`
	Hierarchies map[string][]string `json:"hierarchies,omitempty"`
	Power       *Power              `json:"power,omitempty"`
	Policy      *SitePolicy         `json:"policy,omitempty"`
	Economics   *Economics          `json:"economics,omitempty"`
	CreatedAt   time.Time           `json:"created_at"`
	UpdatedAt   time.Time           `json:"updated_at"`
}

// Economics are a site's unit-economics inputs, amounts in currency units
// ("350000"): what a node and the facility cost and over how long they
// are written off, what running it costs beyond energy, and what the
// operator's own training is charged per GPU-hour.
type Economics struct {
	Currency                string  `json:"currency,omitempty" yaml:"currency" doc:"ISO 4217; default USD."`
	CapexPerNode            string  `json:"capex_per_node" yaml:"capex_per_node"`
	NodeLifeYears           float64 `json:"node_life_years" yaml:"node_life_years" doc:"Straight-line depreciation of the nodes."`
	FacilityCapexPerMW      string  `json:"facility_capex_per_mw,omitempty" yaml:"facility_capex_per_mw" doc:"Per MW of firm capacity (the site's power model)."`
	FacilityLifeYears       float64 `json:"facility_life_years,omitempty" yaml:"facility_life_years"`
	OpexPerMWMonth          string  `json:"opex_per_mw_month,omitempty" yaml:"opex_per_mw_month" doc:"Other operating cost per MW of firm capacity per month."`
	TransferPricePerGPUHour string  `json:"transfer_price_per_gpu_hour,omitempty" yaml:"transfer_price_per_gpu_hour" doc:"What internal work is charged per GPU-hour."`
}

// SitePolicy holds a site's operating settings; zero fields take the
// server's defaults.
type SitePolicy struct {
	// SpotNoticeS and InternalNoticeS are the seconds of notice spot and
	// internal work get before committed work reclaims their nodes.
	SpotNoticeS     int64 `json:"spot_notice_s,omitempty" yaml:"spot_notice_s"`
	InternalNoticeS int64 `json:"internal_notice_s,omitempty" yaml:"internal_notice_s"`
}

// Power is a site's declared power and environment model; the power model
// uses it. All fields are optional; a site without one has no power limit.
type Power struct {
	Feeds      []Feed       `json:"feeds,omitempty" yaml:"feeds"`
	Generation []Generation `json:"generation,omitempty" yaml:"generation"`
	// Permit bounds on-site generation (an air permit): its MW, running
	// hours and tons of each pollutant a year.
	Permit *Permit `json:"permit,omitempty" yaml:"permit"`
	PUE    float64 `json:"pue,omitempty" yaml:"pue"`
	// PUEMonthly, when given, is the PUE of each month (January first).
	PUEMonthly []float64 `json:"pue_monthly,omitempty" yaml:"pue_monthly"`
	WUELPerKWh float64   `json:"wue_l_per_kwh,omitempty" yaml:"wue_l_per_kwh" doc:"Litres of water per kWh of IT energy."`
	// CarbonIntensityGPerKWh is the grid's intensity where a feed names
	// none.
	CarbonIntensityGPerKWh float64 `json:"carbon_intensity_g_per_kwh,omitempty" yaml:"carbon_intensity_g_per_kwh"`
	// SharedITKW is IT load no node meters (network, storage,
	// management): the operator's.
	SharedITKW float64 `json:"shared_it_kw,omitempty" yaml:"shared_it_kw"`
	// EnergyPrice is what the site pays per kWh of facility energy, in
	// currency units ("0.085"): the rate of power pass-through.
	EnergyPrice string `json:"energy_price_per_kwh,omitempty" yaml:"energy_price_per_kwh"`
	// Domains limit power domains below the feeds (a hall, a busway): a
	// path of the power hierarchy and its capacity. A feed's limit is its
	// capacity.
	Domains []PowerDomain `json:"domains,omitempty" yaml:"domains"`
	// PermitWarningDays: a permit limit the forecast crosses within this
	// many days raises an event (0: 30 days).
	PermitWarningDays int `json:"permit_warning_days,omitempty" yaml:"permit_warning_days"`
}

// PowerDomain is a power domain's limit: the committed planning load of
// its nodes × PUE stays within it.
type PowerDomain struct {
	Path       string  `json:"path" yaml:"path" doc:"A path of the power hierarchy, e.g. feed-1/h1 or feed-1/h1/b3."`
	CapacityKW float64 `json:"capacity_kw" yaml:"capacity_kw"`
}

// Feed is a grid feed: its capacity and carbon intensity (a constant, or
// a profile of 24 values by UTC hour of day).
type Feed struct {
	Name          string    `json:"name" yaml:"name"`
	CapacityMW    float64   `json:"capacity_mw" yaml:"capacity_mw"`
	CarbonGPerKWh float64   `json:"carbon_g_per_kwh,omitempty" yaml:"carbon_g_per_kwh"`
	CarbonProfile []float64 `json:"carbon_profile_g_per_kwh,omitempty" yaml:"carbon_profile_g_per_kwh"`
}

// Generation is an on-site generation unit (e.g. a gas turbine): its
// capacity, heat rate and emissions per MWh generated.
type Generation struct {
	Name                string     `json:"name" yaml:"name"`
	CapacityMW          float64    `json:"capacity_mw" yaml:"capacity_mw"`
	HeatRateMMBtuPerMWh float64    `json:"heat_rate_mmbtu_per_mwh,omitempty" yaml:"heat_rate_mmbtu_per_mwh"`
	KgPerMWh            Pollutants `json:"emissions_kg_per_mwh" yaml:"emissions_kg_per_mwh"`
}

// Pollutants are amounts of each pollutant an air permit names, in the
// unit of the field that holds them.
type Pollutants struct {
	CO2          float64 `json:"co2" yaml:"co2"`
	NOx          float64 `json:"nox" yaml:"nox"`
	CO           float64 `json:"co" yaml:"co"`
	VOC          float64 `json:"voc" yaml:"voc"`
	PM           float64 `json:"pm" yaml:"pm"`
	Formaldehyde float64 `json:"formaldehyde" yaml:"formaldehyde"`
}

// Permit is an air permit's limits on on-site generation.
type Permit struct {
	MW                  float64    `json:"mw" yaml:"mw"`
	RunningHoursPerYear float64    `json:"running_hours_per_year,omitempty" yaml:"running_hours_per_year"`
	TonsPerYear         Pollutants `json:"tons_per_year" yaml:"tons_per_year"`
}

// GPU is one device of a node. UUID is empty until an agent reports it.
type GPU struct {
	Index     int    `json:"index"`
	UUID      string `json:"uuid,omitempty"`
	Model     string `json:"model"`
	MemoryMiB int    `json:"memory_mib"`
}

// Node is one GPU server. Domain is its topology path below the site, one
// element per level joined by "/" (e.g. "h1/p03/su12/r2"). Version counts
// stored changes; the snapshot ignores updates older than what it holds.
type Node struct {
	ID            string            `json:"id"`
	Hostname      string            `json:"hostname"`
	Serial        string            `json:"serial"`
	SiteID        string            `json:"site_id"`
	Site          string            `json:"site"`
	SKU           string            `json:"sku"`
	Domain        string            `json:"domain"`
	Hierarchies   map[string]string `json:"hierarchies,omitempty"`
	Lifecycle     Lifecycle         `json:"lifecycle"`
	Health        Health            `json:"health"`
	HealthReasons []string          `json:"health_reasons,omitempty"`
	Cordoned      bool              `json:"cordoned"`
	Spare         bool              `json:"spare"`
	GPUs          []GPU             `json:"gpus"`
	Version       int64             `json:"version"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
}
