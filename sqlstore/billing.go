package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/stdlib"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/sales"
)

var _ billing.Store = (*DB)(nil)

func (db *DB) MeteredAllocations(ctx context.Context, from, to time.Time) ([]billing.Metered, error) {
	skus, err := db.SKUs(ctx)
	if err != nil {
		return nil, err
	}
	bySKU := map[string]fleet.SKU{}
	for _, k := range skus {
		bySKU[k.Name] = k
	}
	rows, err := db.query(ctx, `SELECT a.body, r.contract_id, r.class, r.sku, r.site_id, r.gpus FROM allocations a JOIN reservations r ON r.id = a.reservation_id
		WHERE a.state IN ('ready', 'releasing') UNION ALL
		SELECT a.body, r.contract_id, r.class, r.sku, r.site_id, r.gpus FROM allocations a JOIN reservations r ON r.id = a.reservation_id
		WHERE a.state = 'ended' AND a.updated_at >= ?`, micros(from))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []billing.Metered
	for rows.Next() {
		var body string
		var m billing.Metered
		if err := rows.Scan(&body, &m.ContractID, &m.Class, &m.SKU, &m.SiteID, &m.ReservationGPUs); err != nil {
			return nil, db.translate(err)
		}
		if err := json.Unmarshal([]byte(body), &m.Allocation); err != nil {
			return nil, err
		}
		a := m.Allocation
		if a.ReadyAt == nil || !a.ReadyAt.Before(to) || (a.ReleasedAt != nil && !a.ReleasedAt.After(from)) {
			continue
		}
		k := bySKU[m.SKU]
		m.NodeGPUs, m.GPUShare = k.GPUsPerNode, k.GPUPowerShare
		out = append(out, m)
	}
	return out, db.translate(rows.Err())
}

// EnergyReadingsAt reads every node's readings in [from, to), in no
// particular order. Outside a transaction the range is read in slices of
// time on parallel read connections (on SQLite through the driver itself).
func (db *DB) EnergyReadingsAt(ctx context.Context, from, to time.Time) ([]agents.EnergyReading, error) {
	const query = `SELECT node_id, gpu, at, energy_j, reason, allocation_id FROM energy_readings WHERE at >= ? AND at < ?`
	lo, hi := micros(from), micros(to)
	if txOf(ctx) != nil || hi <= lo {
		return collect(db, ctx, scanReading, query, lo, hi)
	}
	k := int64(max(1, min(runtime.GOMAXPROCS(0), 8)))
	parts := make([][]agents.EnergyReading, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		a, b := lo+(hi-lo)*i/k, lo+(hi-lo)*(i+1)/k
		wg.Add(1)
		go func() {
			defer wg.Done()
			if db.Dialect != SQLite {
				parts[i], errs[i] = collect(db, ctx, scanReading, query, a, b)
				return
			}
			errs[i] = db.rawRows(ctx, query, []any{a, b}, 6, func(v []driver.Value) {
				parts[i] = append(parts[i], agents.EnergyReading{NodeID: rawString(v[0]), GPU: int(rawInt(v[1])), At: fromMicros(rawInt(v[2])),
					EnergyJ: uint64(rawInt(v[3])), Reason: rawString(v[4]), AllocationID: rawString(v[5])})
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(parts...), nil
}

func scanReading(r scanner) (agents.EnergyReading, error) {
	var e agents.EnergyReading
	var at, j int64
	err := r.Scan(&e.NodeID, &e.GPU, &at, &j, &e.Reason, &e.AllocationID)
	e.At, e.EnergyJ = fromMicros(at), uint64(j)
	return e, err
}

const usageCols = `id, allocation_id, hour, rev, reservation_id, contract_id, tenant_id, class, sku, site_id, node_id, start_at, end_at, gpus, rsv_gpus, gpu_seconds, gpu_energy_j, energy_j, energy_source, COALESCE(invoice_id, ''), derived_at`

func scanUsage(r scanner) (billing.UsageRecord, error) {
	var u billing.UsageRecord
	var hour, s, e, d int64
	err := r.Scan(&u.ID, &u.AllocationID, &hour, &u.Rev, &u.ReservationID, &u.ContractID, &u.TenantID, &u.Class, &u.SKU, &u.SiteID, &u.NodeID,
		&s, &e, &u.GPUs, &u.ReservationGPUs, &u.GPUSeconds, &u.GPUEnergyJ, &u.EnergyJ, &u.EnergySource, &u.InvoiceID, &d)
	u.Hour, u.Start, u.End, u.DerivedAt = fromMicros(hour), fromMicros(s), fromMicros(e), fromMicros(d)
	return u, err
}

func (db *DB) UsageRecordsIn(ctx context.Context, tenantID string, from, to time.Time) ([]billing.UsageRecord, error) {
	q, args := `SELECT `+usageCols+` FROM usage_records WHERE hour >= ? AND hour < ?`, []any{micros(from), micros(to)}
	if tenantID != "" {
		q, args = `SELECT `+usageCols+` FROM usage_records WHERE tenant_id = ? AND hour >= ? AND hour < ?`, []any{tenantID, micros(from), micros(to)}
	}
	return collect(db, ctx, scanUsage, q+` ORDER BY id`, args...)
}

// InsertUsageRecords writes new records and adds those of revision 0 to
// their allocation-month spans.
func (db *DB) InsertUsageRecords(ctx context.Context, rs []billing.UsageRecord) error {
	if len(rs) == 0 {
		return nil
	}
	return db.write(ctx, func(ctx context.Context) error {
		err := db.insertBatches(ctx, `INSERT INTO usage_records (id, allocation_id, hour, rev, reservation_id, contract_id, tenant_id, class, sku, site_id, node_id, start_at, end_at, gpus, rsv_gpus, gpu_seconds, gpu_energy_j, energy_j, energy_source, derived_at)`,
			20, len(rs), func(i int) []any {
				u := rs[i]
				return []any{u.ID, u.AllocationID, micros(u.Hour), u.Rev, u.ReservationID, u.ContractID, u.TenantID, u.Class, u.SKU, u.SiteID, u.NodeID,
					micros(u.Start), micros(u.End), u.GPUs, u.ReservationGPUs, u.GPUSeconds, u.GPUEnergyJ, u.EnergyJ, u.EnergySource, micros(u.DerivedAt)}
			})
		if err != nil {
			return err
		}
		spans := billing.Spans(rs)
		least, greatest := "MIN", "MAX"
		if db.Dialect == Postgres {
			least, greatest = "LEAST", "GREATEST"
		}
		return db.insertBatchesThen(ctx, `INSERT INTO usage_spans (`+spanCols+`)`,
			`ON CONFLICT (tenant_id, month, allocation_id) DO UPDATE SET start_at = `+least+`(usage_spans.start_at, excluded.start_at),
			end_at = `+greatest+`(usage_spans.end_at, excluded.end_at),
			gpus = CASE WHEN usage_spans.gpus = excluded.gpus AND usage_spans.rsv_gpus = excluded.rsv_gpus THEN usage_spans.gpus ELSE -1 END,
			gpu_seconds = usage_spans.gpu_seconds + excluded.gpu_seconds, gpu_energy_j = usage_spans.gpu_energy_j + excluded.gpu_energy_j,
			energy_j = usage_spans.energy_j + excluded.energy_j, sources = usage_spans.sources | excluded.sources, records = usage_spans.records + excluded.records`,
			18, len(spans), func(i int) []any {
				u := spans[i]
				return []any{u.TenantID, micros(u.Hour), u.AllocationID, u.ReservationID, u.ContractID, u.Class, u.SKU, u.SiteID, u.NodeID,
					u.GPUs, u.ReservationGPUs, micros(u.Start), micros(u.End), u.GPUSeconds, u.GPUEnergyJ, u.EnergyJ, billing.SourceBits(u.EnergySource), u.Records}
			})
	})
}

// UpdateUsageRecords rewrites open records and sums their spans again.
func (db *DB) UpdateUsageRecords(ctx context.Context, rs []billing.UsageRecord) error {
	if len(rs) == 0 {
		return nil
	}
	return db.write(ctx, func(ctx context.Context) error {
		type key struct {
			tenant, alloc string
			month         int64
		}
		again := map[key]bool{}
		for _, u := range rs {
			if _, err := db.exec(ctx, `UPDATE usage_records SET start_at = ?, end_at = ?, gpus = ?, gpu_seconds = ?, gpu_energy_j = ?, energy_j = ?, energy_source = ?, derived_at = ? WHERE id = ? AND invoice_id IS NULL`,
				micros(u.Start), micros(u.End), u.GPUs, u.GPUSeconds, u.GPUEnergyJ, u.EnergyJ, u.EnergySource, micros(u.DerivedAt), u.ID); err != nil {
				return err
			}
			if u.Rev == 0 {
				again[key{u.TenantID, u.AllocationID, micros(billing.MonthStart(u.Hour))}] = true
			}
		}
		for k := range again {
			end := micros(fromMicros(k.month).AddDate(0, 1, 0))
			if _, err := db.exec(ctx, `DELETE FROM usage_spans WHERE tenant_id = ? AND month = ? AND allocation_id = ?`, k.tenant, k.month, k.alloc); err != nil {
				return err
			}
			if _, err := db.exec(ctx, `INSERT INTO usage_spans (`+spanCols+`)
				SELECT MIN(tenant_id), ?, allocation_id, MIN(reservation_id), MIN(contract_id), MIN(class), MIN(sku), MIN(site_id), MIN(node_id),
				CASE WHEN MIN(gpus) = MAX(gpus) AND MIN(rsv_gpus) = MAX(rsv_gpus) THEN MIN(gpus) ELSE -1 END, MAX(rsv_gpus), MIN(start_at), MAX(end_at),
				SUM(gpu_seconds), SUM(gpu_energy_j), SUM(energy_j),
				MAX(CASE energy_source WHEN 'node_oob' THEN 1 ELSE 0 END) | MAX(CASE energy_source WHEN 'estimated' THEN 2 ELSE 0 END), COUNT(*)
				FROM usage_records WHERE allocation_id = ? AND rev = 0 AND hour >= ? AND hour < ? GROUP BY allocation_id`, k.month, k.alloc, k.month, end); err != nil {
				return err
			}
		}
		return nil
	})
}

const spanCols = `tenant_id, month, allocation_id, reservation_id, contract_id, class, sku, site_id, node_id, gpus, rsv_gpus, start_at, end_at, gpu_seconds, gpu_energy_j, energy_j, sources, records`

// OpenSpans reads what rating needs of a tenant's spans of the months in
// [from, before) — not their class, SKU, node or GPU energy, their energy
// only when asked (power pass-through) — in no order (rating orders them
// itself); internal work is never invoiced. A span's GPU-seconds are read
// as its tiling says (GPUs -1 where its records do not tile it: rated
// from the records).
func (db *DB) OpenSpans(ctx context.Context, tenantID string, from, before time.Time, energy bool) ([]billing.UsageRecord, error) {
	energyCol := "0"
	if energy {
		energyCol = "energy_j"
	}
	query := `SELECT allocation_id, month, reservation_id, contract_id, site_id, start_at, end_at, ` + spanTiles + `, rsv_gpus, ` + energyCol + `, records * 4 + sources
		FROM usage_spans WHERE tenant_id = ? AND month >= ? AND month < ? AND class <> 'internal'`
	if db.Dialect == SQLite && txOf(ctx) == nil {
		return db.rawSpans(ctx, tenantID, query, micros(from), micros(before))
	}
	scan := spanScanner()
	return collect(db, ctx, func(r scanner) (billing.UsageRecord, error) { return scan(r, tenantID) }, query, tenantID, micros(from), micros(before))
}

// rawSpans runs OpenSpans's query on a read connection of its own through
// the driver (rawRows): a million spans cost a second less of
// database/sql's per-value conversion and locking.
func (db *DB) rawSpans(ctx context.Context, tenantID, query string, from, before int64) ([]billing.UsageRecord, error) {
	var out []billing.UsageRecord
	months := spanMonths{}
	err := db.rawRows(ctx, query, []any{tenantID, from, before}, 11, func(vals []driver.Value) {
		u := billing.UsageRecord{TenantID: tenantID, AllocationID: rawString(vals[0]), ReservationID: rawString(vals[2]), ContractID: rawString(vals[3]), SiteID: rawString(vals[4]),
			GPUs: int(rawInt(vals[7])), ReservationGPUs: int(rawInt(vals[8])), EnergyJ: rawInt(vals[9])}
		months.finish(&u, rawInt(vals[1]), rawInt(vals[5]), rawInt(vals[6]), rawInt(vals[10]))
		out = append(out, u)
	})
	return out, err
}

// rawRows runs a query on a SQLite read connection of its own through the
// driver, handing each row's n values to fn as the driver gives them
// (int64, string, …), without database/sql's per-value conversion.
func (db *DB) rawRows(ctx context.Context, query string, args []any, n int, fn func([]driver.Value)) error {
	conn, err := db.r.Conn(ctx)
	if err != nil {
		return db.translate(err)
	}
	defer conn.Close()
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return db.translate(conn.Raw(func(dc any) error {
		q, ok := dc.(driver.QueryerContext)
		if !ok {
			return fmt.Errorf("sqlstore: the SQLite driver cannot query directly")
		}
		rows, err := q.QueryContext(ctx, query, named)
		if err != nil {
			return err
		}
		defer rows.Close()
		vals := make([]driver.Value, n)
		for {
			if err := rows.Next(vals); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			fn(vals)
		}
	}))
}

func rawString(v driver.Value) string { x, _ := v.(string); return x }
func rawInt(v driver.Value) int64     { x, _ := v.(int64); return x }

// spanTiles reads a span's GPUs where its records tile it, else -1.
const spanTiles = `CASE WHEN gpus > 0 AND (end_at - start_at) / 1000000 * gpus = gpu_seconds THEN gpus ELSE -1 END`

// spanMonths names the months of spans read, each once.
type spanMonths map[int64]string

// finish sets what a span read carries beyond its columns: its times,
// records and energy source, GPU-seconds where it tiles, and its id.
func (ms spanMonths) finish(u *billing.UsageRecord, month, s, e, rs int64) {
	u.Hour, u.Start, u.End = fromMicros(month), fromMicros(s), fromMicros(e)
	u.Records, u.EnergySource = int(rs/4), billing.SourceOfBits(int(rs%4))
	if u.GPUs > 0 {
		u.GPUSeconds = (e - s) / 1_000_000 * int64(u.GPUs)
	}
	m, ok := ms[month]
	if !ok {
		m = billing.MonthOf(u.Hour)
		ms[month] = m
	}
	u.ID = "spn:" + u.AllocationID + ":" + m
}

// spanScanner reads the columns OpenSpans selects (a tenant id first,
// where OpenSpansAll selects it).
func spanScanner() func(r scanner, tenantID string, lead ...any) (billing.UsageRecord, error) {
	months := spanMonths{}
	return func(r scanner, tenantID string, lead ...any) (billing.UsageRecord, error) {
		u := billing.UsageRecord{TenantID: tenantID}
		var month, s, e, rs int64
		err := r.Scan(append(lead, &u.AllocationID, &month, &u.ReservationID, &u.ContractID, &u.SiteID, &s, &e, &u.GPUs, &u.ReservationGPUs, &u.EnergyJ, &rs)...)
		months.finish(&u, month, s, e, rs)
		return u, err
	}
}

// SpansByTenant is true on SQLite, whose spans lie clustered by tenant;
// a PostgreSQL heap holds a tenant's spans all over it.
func (db *DB) SpansByTenant() bool { return db.Dialect == SQLite }

// OpenSpansAll reads several tenants' open spans, energy included. On
// PostgreSQL one scan of the table (a tenant's spans lie all over its
// heap, so reading tenant by tenant reads it again and again); on SQLite,
// whose spans are clustered by tenant, a query a tenant, in parallel on
// the read pool when ctx carries no transaction.
func (db *DB) OpenSpansAll(ctx context.Context, tenantIDs []string, from, before time.Time) (map[string][]billing.UsageRecord, error) {
	out := make(map[string][]billing.UsageRecord, len(tenantIDs))
	want := make(map[string]bool, len(tenantIDs))
	for _, id := range tenantIDs {
		want[id] = true
		out[id] = nil
	}
	if db.Dialect == Postgres && txOf(ctx) == nil {
		return out, db.pgSpans(ctx, want, out, micros(from), micros(before))
	}
	if db.Dialect == Postgres {
		rows, err := db.query(ctx, `SELECT tenant_id, allocation_id, month, reservation_id, contract_id, site_id, start_at, end_at, `+spanTiles+`, rsv_gpus, energy_j, records * 4 + sources
			FROM usage_spans WHERE month >= ? AND month < ? AND class <> 'internal'`, micros(from), micros(before))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		scan := spanScanner()
		var tid string
		for rows.Next() {
			u, err := scan(rows, "", &tid)
			if err != nil {
				return nil, db.translate(err)
			}
			if want[tid] {
				u.TenantID = tid
				out[tid] = append(out[tid], u)
			}
		}
		return out, db.translate(rows.Err())
	}
	workers := 1
	if txOf(ctx) == nil {
		workers = max(1, min(runtime.GOMAXPROCS(0), 8))
	}
	var mu sync.Mutex
	var first error
	work := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				rs, err := db.OpenSpans(ctx, id, from, before, true)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				out[id] = rs
				mu.Unlock()
			}
		}()
	}
	for _, id := range tenantIDs {
		work <- id
	}
	close(work)
	wg.Wait()
	return out, first
}

// pgSpans reads every tenant's open spans in one scan on a connection of
// its own through pgx itself, scanning into typed fields without
// database/sql's per-value conversions.
func (db *DB) pgSpans(ctx context.Context, want map[string]bool, out map[string][]billing.UsageRecord, from, before int64) error {
	conn, err := db.r.Conn(ctx)
	if err != nil {
		return db.translate(err)
	}
	defer conn.Close()
	return db.translate(conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("sqlstore: not a pgx connection")
		}
		rows, err := c.Conn().Query(ctx, `SELECT tenant_id, allocation_id, month, reservation_id, contract_id, site_id, start_at, end_at, `+spanTiles+`, rsv_gpus, energy_j, records * 4 + sources
			FROM usage_spans WHERE month >= $1 AND month < $2 AND class <> 'internal'`, from, before)
		if err != nil {
			return err
		}
		defer rows.Close()
		months := spanMonths{}
		var tid string
		for rows.Next() {
			var u billing.UsageRecord
			var month, s, e, rs int64
			if err := rows.Scan(&tid, &u.AllocationID, &month, &u.ReservationID, &u.ContractID, &u.SiteID, &s, &e, &u.GPUs, &u.ReservationGPUs, &u.EnergyJ, &rs); err != nil {
				return err
			}
			if !want[tid] {
				continue
			}
			u.TenantID = tid
			months.finish(&u, month, s, e, rs)
			out[tid] = append(out[tid], u)
		}
		return rows.Err()
	}))
}

func (db *DB) OpenRevisions(ctx context.Context, tenantID string, before time.Time) ([]billing.UsageRecord, error) {
	return collect(db, ctx, scanUsage, `SELECT `+usageCols+` FROM usage_records
		WHERE tenant_id = ? AND hour < ? AND invoice_id IS NULL AND rev > 0 AND class <> 'internal'`, tenantID, micros(before))
}

func (db *DB) AllocationRecords(ctx context.Context, allocationID string, from, to time.Time) ([]billing.UsageRecord, error) {
	return collect(db, ctx, scanUsage, `SELECT `+usageCols+` FROM usage_records WHERE allocation_id = ? AND hour >= ? AND hour < ? AND rev = 0 ORDER BY hour`,
		allocationID, micros(from), micros(to))
}

func (db *DB) MeterThrough(ctx context.Context) (time.Time, error) {
	var v int64
	err := db.queryRow(ctx, `SELECT through FROM meter_state WHERE id = 1`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && v == 0) {
		return time.Time{}, nil
	}
	return fromMicros(v), db.translate(err)
}

// LockUsage takes the usage lock for the rest of the transaction: usage
// records and spans are written, and a month closed, only under it, so a
// close reads usage no meter pass changes under it. SQLite's one writer
// holds it already; PostgreSQL locks the meter's row.
func (db *DB) LockUsage(ctx context.Context) error {
	if db.Dialect != Postgres {
		return nil
	}
	return db.write(ctx, func(ctx context.Context) error {
		if _, err := db.exec(ctx, `INSERT INTO meter_state (id, through) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`); err != nil {
			return err
		}
		var v int64
		return db.translate(db.queryRow(ctx, `SELECT through FROM meter_state WHERE id = 1 FOR UPDATE`).Scan(&v))
	})
}

func (db *DB) SetMeterThrough(ctx context.Context, t time.Time) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO meter_state (id, through) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET through = excluded.through`, micros(t))
		return err
	})
}

func scanSpot(r scanner) (billing.SpotPoint, error) {
	var p billing.SpotPoint
	var at int64
	err := r.Scan(&p.SiteID, &p.SKU, &at, &p.RateMicros)
	p.At = fromMicros(at)
	return p, err
}

func (db *DB) PutSpotPoint(ctx context.Context, p billing.SpotPoint) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO spot_prices (site_id, sku, at, rate_micros) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, p.SiteID, p.SKU, micros(p.At), p.RateMicros)
		return err
	})
}

func (db *DB) SpotPoints(ctx context.Context, from, to time.Time) ([]billing.SpotPoint, error) {
	return collect(db, ctx, scanSpot, `SELECT site_id, sku, at, rate_micros FROM spot_prices WHERE at >= ? AND at < ? ORDER BY site_id, sku, at`, micros(from), micros(to))
}

func (db *DB) LastSpotPoint(ctx context.Context, siteID, sku string) (billing.SpotPoint, bool, error) {
	p, err := scanSpot(db.queryRow(ctx, `SELECT site_id, sku, at, rate_micros FROM spot_prices WHERE site_id = ? AND sku = ? ORDER BY at DESC LIMIT 1`, siteID, sku))
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	return p, err == nil, db.translate(err)
}

// jsonRow reads one JSON body; false when there is no row.
func jsonRow[T any](db *DB, ctx context.Context, v *T, query string, args ...any) (bool, error) {
	var body string
	err := db.queryRow(ctx, query, args...).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, db.translate(err)
	}
	return true, json.Unmarshal([]byte(body), v)
}

func (db *DB) Seller(ctx context.Context) (billing.Seller, bool, error) {
	var s billing.Seller
	ok, err := jsonRow(db, ctx, &s, `SELECT body FROM billing_seller WHERE id = 1`)
	return s, ok, err
}

func (db *DB) PutSeller(ctx context.Context, s billing.Seller) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO billing_seller (id, body) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET body = excluded.body`, mustJSON(s))
		return err
	})
}

func (db *DB) Profile(ctx context.Context, tenantID string) (billing.Profile, bool, error) {
	var p billing.Profile
	ok, err := jsonRow(db, ctx, &p, `SELECT body FROM billing_profiles WHERE tenant_id = ?`, tenantID)
	return p, ok, err
}

func (db *DB) PutProfile(ctx context.Context, p billing.Profile) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO billing_profiles (tenant_id, body) VALUES (?, ?) ON CONFLICT (tenant_id) DO UPDATE SET body = excluded.body`, p.TenantID, mustJSON(p))
		return err
	})
}

func (db *DB) Periods(ctx context.Context) ([]billing.Period, error) {
	return collect(db, ctx, func(r scanner) (billing.Period, error) {
		var p billing.Period
		var s, e, c int64
		err := r.Scan(&p.Period, &s, &e, &c, &p.ClosedBy, &p.Invoices)
		p.Start, p.End, p.ClosedAt = fromMicros(s), fromMicros(e), fromMicros(c)
		return p, err
	}, `SELECT period, start_at, end_at, closed_at, closed_by, invoices FROM billing_periods ORDER BY period`)
}

func (db *DB) InsertPeriod(ctx context.Context, p billing.Period) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO billing_periods (period, start_at, end_at, closed_at, closed_by, invoices) VALUES (?, ?, ?, ?, ?, ?)`,
			p.Period, micros(p.Start), micros(p.End), micros(p.ClosedAt), p.ClosedBy, p.Invoices)
		return err
	})
}

func (db *DB) NextNumber(ctx context.Context, series string) (int64, error) {
	var n int64
	err := db.write(ctx, func(ctx context.Context) error {
		if _, err := db.exec(ctx, `INSERT INTO invoice_series (series, next) VALUES (?, 1) ON CONFLICT (series) DO NOTHING`, series); err != nil {
			return err
		}
		return db.translate(db.queryRow(ctx, `UPDATE invoice_series SET next = next + 1 WHERE series = ? RETURNING next - 1`, series).Scan(&n))
	})
	return n, err
}

func (db *DB) InsertInvoice(ctx context.Context, inv billing.Invoice) error {
	return db.write(ctx, func(ctx context.Context) error {
		if _, err := db.exec(ctx, `INSERT INTO invoices (id, number, kind, tenant_id, period, currency, refers_to, total_micros, issued_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			inv.ID, inv.Number, inv.Kind, inv.TenantID, inv.Period, inv.Currency, nullString(inv.RefersTo), inv.TotalMicros, micros(inv.IssuedAt), mustJSON(inv)); err != nil {
			return err
		}
		for _, l := range inv.Lines {
			if l.ChargeKey != "" {
				if _, err := db.exec(ctx, `INSERT INTO invoice_charges (charge_key, invoice_id) VALUES (?, ?)`, l.ChargeKey, inv.ID); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (db *DB) MarkInvoiced(ctx context.Context, invoiceID, tenantID string, contractIDs []string, from, start, before time.Time) (int64, error) {
	var n int64
	err := db.write(ctx, func(ctx context.Context) error {
		for i := 0; i < len(contractIDs); i += 500 {
			chunk := contractIDs[i:min(len(contractIDs), i+500)]
			in := ` AND contract_id IN (?` + strings.Repeat(", ?", len(chunk)-1) + `)`
			type update struct {
				where string
				args  []any
			}
			qs := []update{{`tenant_id = ? AND hour < ? AND invoice_id IS NULL AND rev > 0`, []any{tenantID, micros(before)}}}
			if from.Before(start) { // the months before a first close
				qs = append(qs, update{`tenant_id = ? AND hour >= ? AND hour < ? AND invoice_id IS NULL AND rev = 0`, []any{tenantID, micros(from), micros(start)}})
			}
			for _, q := range qs {
				args := append([]any{invoiceID}, q.args...)
				for _, id := range chunk {
					args = append(args, id)
				}
				res, err := db.exec(ctx, `UPDATE usage_records SET invoice_id = ? WHERE `+q.where+in, args...)
				if err != nil {
					return err
				}
				k, _ := res.RowsAffected()
				n += k
			}
		}
		return nil
	})
	return n, err
}

func (db *DB) Invoice(ctx context.Context, id string) (billing.Invoice, error) {
	var inv billing.Invoice
	ok, err := jsonRow(db, ctx, &inv, `SELECT body FROM invoices WHERE id = ?`, id)
	if err == nil && !ok {
		err = neocloud.NotFound("invoice", id)
	}
	return inv, err
}

func (db *DB) InvoiceIDByNumber(ctx context.Context, number string) (string, error) {
	var id string
	err := db.queryRow(ctx, `SELECT id FROM invoices WHERE number = ?`, number).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", neocloud.NotFound("invoice", number)
	}
	return id, db.translate(err)
}

func (db *DB) Invoices(ctx context.Context, f billing.InvoiceFilter, pg neocloud.Page) ([]billing.Invoice, error) {
	q, args := `SELECT body FROM invoices WHERE number > ?`, []any{pg.After()}
	for _, c := range []struct{ col, v string }{{"tenant_id", f.TenantID}, {"period", f.Period}, {"kind", f.Kind}} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	return collect(db, ctx, scanBody[billing.Invoice], q+` ORDER BY number LIMIT ?`, append(args, limitOf(pg))...)
}

func (db *DB) Credited(ctx context.Context, invoiceID string) (int64, error) {
	cns, err := collect(db, ctx, scanBody[billing.Invoice], `SELECT body FROM invoices WHERE refers_to = ?`, invoiceID)
	var n int64
	for _, c := range cns {
		n += c.SubtotalMicros
	}
	return n, err
}

func (db *DB) BilledCharges(ctx context.Context, keys []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(keys); start += 500 {
		chunk := keys[start:min(len(keys), start+500)]
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		got, err := collect(db, ctx, func(r scanner) (string, error) {
			var k string
			return k, r.Scan(&k)
		}, `SELECT charge_key FROM invoice_charges WHERE charge_key IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for _, k := range got {
			out[k] = true
		}
	}
	return out, nil
}

func (db *DB) AllContracts(ctx context.Context, tenantID string) ([]sales.Contract, error) {
	var out []sales.Contract
	pg := neocloud.Page{Limit: neocloud.MaxLimit}
	for {
		cs, err := db.Contracts(ctx, tenantID, pg)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
		if len(cs) < pg.Limit {
			return out, nil
		}
		pg.Cursor = neocloud.EncodeCursor(cs[len(cs)-1].ID)
	}
}

func (db *DB) HourlyUsage(ctx context.Context, from, to time.Time) ([]billing.HourUsage, error) {
	return collect(db, ctx, func(r scanner) (billing.HourUsage, error) {
		var u billing.HourUsage
		var h int64
		err := r.Scan(&h, &u.Class, &u.GPUSeconds, &u.EnergyJ)
		u.Hour = fromMicros(h)
		return u, err
	}, `SELECT hour, class, SUM(gpu_seconds), SUM(energy_j) FROM usage_records WHERE hour >= ? AND hour < ? GROUP BY hour, class ORDER BY hour, class`, micros(from), micros(to))
}

func (db *DB) ConfirmedReports(ctx context.Context, reservationID string) ([]sales.BreakFix, error) {
	return collect(db, ctx, scanBreakFix, `SELECT state, body FROM break_fix WHERE reservation_id = ? AND kind = 'report' AND confirmed_at IS NOT NULL ORDER BY created_at`, reservationID)
}

func (db *DB) PutCreditSources(ctx context.Context, invoiceID string, line int, c billing.Credit) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO credit_sources (invoice_id, line, body) VALUES (?, ?, ?)`, invoiceID, line, mustJSON(c))
		return err
	})
}

func (db *DB) CreditSources(ctx context.Context, invoiceID string, line int) (billing.Credit, bool, error) {
	var c billing.Credit
	ok, err := jsonRow(db, ctx, &c, `SELECT body FROM credit_sources WHERE invoice_id = ? AND line = ?`, invoiceID, line)
	return c, ok, err
}

func (db *DB) LineRecords(ctx context.Context, q billing.LineQuery) (billing.LineRecordSet, error) {
	where := `tenant_id = ? AND hour >= ? AND hour < ? AND contract_id = ?
		AND (invoice_id = ? OR (invoice_id IS NULL AND rev = 0 AND hour >= ? AND hour < ?))`
	args := []any{q.TenantID, micros(q.From), micros(q.To), q.ContractID, q.InvoiceID, micros(q.PeriodStart), micros(q.PeriodEnd)}
	if q.ReservationID != "" {
		where += ` AND reservation_id = ?`
		args = append(args, q.ReservationID)
	}
	if q.SiteID != "" {
		where += ` AND site_id = ?`
		args = append(args, q.SiteID)
	}
	var set billing.LineRecordSet
	var gs, j sql.NullInt64
	if err := db.queryRow(ctx, `SELECT COUNT(*), COUNT(DISTINCT allocation_id), SUM(gpu_seconds), SUM(energy_j) FROM usage_records WHERE `+where, args...).
		Scan(&set.Count, &set.Allocations, &gs, &j); err != nil {
		return set, db.translate(err)
	}
	set.GPUSeconds, set.EnergyJ = gs.Int64, j.Int64
	var err error
	set.Records, err = collect(db, ctx, scanUsage, `SELECT `+usageCols+` FROM usage_records WHERE `+where+` ORDER BY id LIMIT ?`, append(args, q.Limit)...)
	return set, err
}

// InsertEndedAllocations writes allocations that have ended (their GPUs
// claim nothing any more): a month's history at once, for importing a
// fleet's past and for benchmarks.
func (db *DB) InsertEndedAllocations(ctx context.Context, as []sales.Allocation) error {
	return db.write(ctx, func(ctx context.Context) error {
		return db.insertBatches(ctx, `INSERT INTO allocations (id, reservation_id, tenant_id, node_id, gpus, state, body, due_at, version, created_at, updated_at)`, 11, len(as), func(i int) []any {
			a := as[i]
			return []any{a.ID, a.ReservationID, a.TenantID, a.NodeID, mustJSON(a.GPUs), string(sales.AllocationEnded), mustJSON(a), micros(a.DueAt), a.Version, micros(a.CreatedAt), micros(a.UpdatedAt)}
		})
	})
}

// InsertReservations writes reservations without their nodes (history).
func (db *DB) InsertReservations(ctx context.Context, rs []sales.Reservation) error {
	return db.write(ctx, func(ctx context.Context) error {
		return db.insertBatches(ctx, `INSERT INTO reservations (id, tenant_id, contract_id, quote_id, site_id, sku, class, state, start_at, end_at, due_at, body, version, created_at, updated_at, gpus)`, 16, len(rs), func(i int) []any {
			r := rs[i]
			return []any{r.ID, r.TenantID, r.ContractID, nil, r.Shape.Site, r.Shape.SKU, string(r.Shape.Class), string(r.State),
				micros(r.Shape.Start), endMicros(r.Shape.End), micros(r.DueAt), mustJSON(r), r.Version, micros(r.CreatedAt), micros(r.UpdatedAt), r.Shape.GPUs}
		})
	})
}
