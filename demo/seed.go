package demo

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// SiteOptions shapes the demo's site like Colossus (8 nodes a rack, 4
// racks a scalable unit, 16 sus a pod, 12 pods a hall) but with at least
// two halls, so that one can be leased whole: smaller sites get smaller
// pods. One node per su is a spare.
func SiteOptions(sku fleet.SKU, gpus int) fleet.GenerateOptions {
	o := fleet.ColossusOptions(sku, gpus)
	if sku.NVLinkDomainNodes > 0 {
		return o
	}
	nodes := gpus / sku.GPUsPerNode
	sus := (nodes + 31) / 32
	susPerPod := 16
	if sus < 32 {
		susPerPod = max(1, sus/2)
	}
	pods := (sus + susPerPod - 1) / susPerPod
	o.Fanout = []int{min(12, max(1, pods/2)), susPerPod, 4, 8}
	o.Spares, o.SpareLevel = 1, "su"
	return o
}

// The demo's tenants: acme leases a hall, beta and gamma reserve clusters,
// delta and gamma use on-demand, spotco spot, and train is the operator's
// own training.
var demoTenants = []tenant.CreateInput{
	{Name: "acme", DisplayName: "Acme AI"},
	{Name: "beta", DisplayName: "Beta Labs"},
	{Name: "gamma", DisplayName: "Gamma Research"},
	{Name: "delta", DisplayName: "Delta Robotics"},
	{Name: "spotco", DisplayName: "SpotCo Batch"},
	{Name: "train", DisplayName: "Our own training", Internal: true},
}

// DemoSKU is the demo site's SKU.
const DemoSKU = "h100-sxm5-80gb"

// seed generates the site and sells it: prices, tenants, a whole-hall
// lease delivered in phases, two reserved clusters, a held quote, a
// maintenance window and internal training.
func (d *Demo) seed(ctx context.Context) error {
	srv, op := d.Server, d.op
	now := d.Clock.Now()
	sku, _ := fleet.CatalogSKU(DemoSKU)
	var spec bytes.Buffer
	if _, err := fleet.Generate(&spec, SiteOptions(sku, d.o.GPUs)); err != nil {
		return err
	}
	parsed, err := fleet.ParseSpec(spec.Bytes())
	if err != nil {
		return err
	}
	// What the site pays for energy: the rate of power pass-through.
	if parsed.Site.Power == nil {
		parsed.Site.Power = &fleet.Power{PUE: 1.25}
	}
	parsed.Site.Power.EnergyPrice = "0.085"
	sitePower(parsed.Site.Power, len(parsed.Nodes)*sku.NodeMaxPowerW)
	// Unit economics (illustrative): an HGX H100 node at 300,000 over five
	// years, the facility at 10 million a MW over twenty, 40,000 a
	// MW-month to run, internal training charged 1.40 a GPU-hour.
	parsed.Site.Economics = &fleet.Economics{CapexPerNode: "300000", NodeLifeYears: 5, FacilityCapexPerMW: "10000000", FacilityLifeYears: 20,
		OpexPerMWMonth: "40000", TransferPricePerGPUHour: "1.40"}
	applied, err := srv.Fleet.Apply(ctx, parsed)
	if err != nil {
		return err
	}
	site, _ := srv.Fleet.Snapshot.Site(applied.SiteID)
	d.st.Site = site.Name
	halls, err := srv.Fleet.Snapshot.Domains(site, "hall")
	if err != nil {
		return err
	}
	for _, in := range demoTenants {
		if _, err := srv.Tenants.Create(ctx, in); err != nil {
			return err
		}
	}
	_, secret, err := srv.Tenants.CreateToken(ctx, op, tenant.CreateTokenInput{Name: "acme-admin", Role: neocloud.RoleTenantAdmin, Tenant: "acme"})
	if err != nil {
		return err
	}
	d.st.TenantToken = secret
	// Billing: who invoices, each tenant's tax, and a month that closes
	// five minutes after it ends (seconds, at the demo's speed).
	if _, err := srv.Billing.SetSeller(ctx, billing.Seller{Party: billing.Party{Name: "Colossus Compute LLC", Address: "3231 Paul R. Lowry Rd, Memphis, TN 38109, USA", TaxID: "US 88-1234567"},
		InvoicePrefix: "CC-", CreditPrefix: "CC-CN-", PaymentTermsD: 30, CloseAfterS: 300}); err != nil {
		return err
	}
	for name, p := range map[string]billing.Profile{
		"acme":   {LegalName: "Acme AI, Inc.", Address: "500 Market St, San Francisco, CA 94105, USA", TaxRate: "0"},
		"beta":   {LegalName: "Beta Labs LLC", Address: "1 Kendall Sq, Cambridge, MA 02139, USA", TaxRate: "6.25"},
		"gamma":  {LegalName: "Gamma Research GmbH", Address: "Invalidenstraße 117, 10115 Berlin, Germany", TaxID: "DE123456789", TaxRate: "19"},
		"delta":  {LegalName: "Delta Robotics, Inc.", Address: "2100 Geng Rd, Palo Alto, CA 94303, USA", TaxRate: "9.25"},
		"spotco": {LegalName: "SpotCo Batch Ltd", Address: "1 Canada Sq, London E14 5AB, UK", TaxRate: "20"},
	} {
		if _, err := srv.Billing.SetProfile(ctx, op, name, p); err != nil {
			return err
		}
	}
	for _, p := range []sales.PriceInput{
		{SKU: DemoSKU, Class: placement.ClassReserved, List: "2.50"},
		{SKU: DemoSKU, Class: placement.ClassOnDemand, List: "3.20"},
		{SKU: DemoSKU, Class: placement.ClassSpot, SpotFloor: "0.80", SpotCeiling: "2.40"},
	} {
		if _, err := srv.Sales.SetPrice(ctx, op, p); err != nil {
			return err
		}
	}
	// The last hall, leased whole for three years, delivered in four
	// phases eight hours apart.
	hall := halls[len(halls)-1]
	leaseGPUs := (hall.Nodes - hall.Spares) * sku.GPUsPerNode
	phase := max(1, (leaseGPUs/sku.GPUsPerNode+3)/4) * sku.GPUsPerNode // four phases, the last maybe smaller
	if _, err := srv.Sales.CreateLease(ctx, op, sales.LeaseInput{Tenant: "acme", Site: site.Name, Domain: hall.Path, Start: now.Add(10 * time.Minute),
		DurationS: 3 * 365 * 86400, Rate: "1.85", PhaseGPUs: phase, PhaseEveryS: 8 * 3600, PowerPassThrough: true}); err != nil {
		return fmt.Errorf("lease of %s: %w", hall.Path, err)
	}
	// Two reserved clusters in the first hall, each within a pod: one
	// starting soon, one in three hours.
	o := SiteOptions(sku, d.o.GPUs)
	podGPUs := o.Fanout[1] * o.Fanout[2] * o.Fanout[3] * sku.GPUsPerNode
	tenantP := func(name string) (neocloud.Principal, error) {
		t, err := srv.Tenants.Resolve(ctx, op, name)
		return neocloud.Principal{TokenID: "demo-" + name, Role: neocloud.RoleTenantAdmin, TenantID: t.ID}, err
	}
	for _, rc := range []struct {
		tenant string
		gpus   int
		in     time.Duration
		days   int64
	}{{"beta", min(d.o.GPUs/8, podGPUs/2), 20 * time.Minute, 14}, {"gamma", min(d.o.GPUs/16, podGPUs/4), 3 * time.Hour, 7}} {
		p, err := tenantP(rc.tenant)
		if err != nil {
			return err
		}
		start := now.Add(rc.in).Truncate(time.Minute)
		gpus := max(sku.GPUsPerNode, rc.gpus/sku.GPUsPerNode*sku.GPUsPerNode)
		if _, err := srv.Sales.Reserve(ctx, p, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: DemoSKU, GPUs: gpus, Class: placement.ClassReserved,
			Start: &start, DurationS: rc.days * 86400, Within: "pod"}}); err != nil {
			return fmt.Errorf("reserved cluster of %s: %w", rc.tenant, err)
		}
	}
	// A quote gamma holds for a bigger cluster next week.
	if p, err := tenantP("gamma"); err == nil {
		start := now.Add(7 * 24 * time.Hour).Truncate(time.Hour)
		if _, err := srv.Sales.CreateQuote(ctx, p, sales.QuoteInput{ShapeInput: sales.ShapeInput{SKU: DemoSKU, GPUs: max(sku.GPUsPerNode, min(d.o.GPUs/32, podGPUs/2)/sku.GPUsPerNode*sku.GPUsPerNode),
			Class: placement.ClassReserved, Start: &start, DurationS: 30 * 86400, Within: "pod"}, Hold: true}); err != nil {
			return fmt.Errorf("quote: %w", err)
		}
	}
	// A maintenance window on a rack of the first hall, in two hours.
	racks, err := srv.Fleet.Snapshot.Domains(site, "rack")
	if err != nil {
		return err
	}
	if len(racks) > 1 {
		rack := racks[len(racks)/4]
		if _, err := srv.Sales.CreateMaintenance(ctx, op, sales.MaintenanceInput{Site: site.Name, Domain: rack.Path, Start: now.Add(2 * time.Hour).Truncate(time.Minute),
			DurationS: 4 * 3600, Reason: "PDU firmware upgrade"}); err != nil {
			return fmt.Errorf("maintenance: %w", err)
		}
	}
	return d.train(ctx)
}

// train keeps one elastic training job of the operator's own queued or
// running: a job evicted whole is submitted again.
func (d *Demo) train(ctx context.Context) error {
	sv := d.Server.Sales
	rs, err := sv.Reservations(ctx, d.op, sales.ReservationFilter{Class: placement.ClassInternal}, neocloud.Page{Limit: 1000})
	if err != nil {
		return err
	}
	for _, r := range rs {
		if !r.State.Terminal() && r.State != sales.ReservationEnding {
			return nil
		}
	}
	step := 64
	_, err = sv.Reserve(ctx, d.op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: "train", SKU: DemoSKU, Class: placement.ClassInternal,
		Elastic: &sales.ElasticInput{MinGPUs: step, MaxGPUs: d.o.GPUs, StepGPUs: step, StepWithin: "rack", CheckpointS: 1800}}})
	return err
}

// sitePower gives the demo site Colossus's shape of supply (illustrative
// figures): the grid feeds carry half the site's nameplate facility load,
// with an hourly carbon profile of a Southeastern US grid; gas turbines
// under an air permit cover the rest at peaks (firm capacity: 105% of the
// nameplate load).
func sitePower(p *fleet.Power, nameplateW int) {
	facilityMW := float64(nameplateW) * 1.25 / 1e6
	profile := make([]float64, 24)
	for h := range profile {
		// Cleaner at night (UTC 04–12 is night in Memphis), dirtier at the
		// evening peak.
		profile[h] = 390 + 60*math.Sin(float64(h-12)*math.Pi/12)
	}
	for i := range p.Feeds {
		p.Feeds[i].CapacityMW = math.Round(p.Feeds[i].CapacityMW*50) / 100
		p.Feeds[i].CarbonProfile = profile
	}
	units := max(1, int(math.Ceil(facilityMW*0.6/2.5)))
	p.Generation = nil
	for i := range units {
		p.Generation = append(p.Generation, fleet.Generation{Name: fmt.Sprintf("turbine-%d", i+1), CapacityMW: 2.5, HeatRateMMBtuPerMWh: 10.2,
			KgPerMWh: fleet.Pollutants{CO2: 545, NOx: 0.45, CO: 0.3, VOC: 0.03, PM: 0.03, Formaldehyde: 0.005}})
	}
	p.Permit = &fleet.Permit{MW: math.Round(facilityMW*0.55*10) / 10, RunningHoursPerYear: 4000,
		TonsPerYear: fleet.Pollutants{NOx: 40, CO: 30, VOC: 3, PM: 3, Formaldehyde: 0.5}}
	p.WUELPerKWh, p.SharedITKW = 0.35, math.Round(facilityMW*1000*0.01)
}
