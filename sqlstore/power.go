package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
)

var _ power.Store = (*DB)(nil)

func (db *DB) PutSiteEnergy(ctx context.Context, hs []power.SiteHour) error {
	if len(hs) == 0 {
		return nil
	}
	return db.write(ctx, func(ctx context.Context) error {
		return db.insertBatchesThen(ctx, `INSERT INTO site_energy (site_id, hour, node_energy_j, nodes, estimated_nodes, derived_at)`,
			`ON CONFLICT (site_id, hour) DO UPDATE SET node_energy_j = excluded.node_energy_j, nodes = excluded.nodes,
			estimated_nodes = excluded.estimated_nodes, derived_at = excluded.derived_at`, 6, len(hs), func(i int) []any {
				h := hs[i]
				return []any{h.SiteID, micros(h.Hour), h.NodeEnergyJ, h.Nodes, h.EstimatedNodes, micros(h.DerivedAt)}
			})
	})
}

func (db *DB) SiteEnergy(ctx context.Context, siteID string, from, to time.Time) ([]power.SiteHour, error) {
	return collect(db, ctx, func(r scanner) (power.SiteHour, error) {
		h := power.SiteHour{SiteID: siteID}
		var hour, d int64
		err := r.Scan(&hour, &h.NodeEnergyJ, &h.Nodes, &h.EstimatedNodes, &d)
		h.Hour, h.DerivedAt = fromMicros(hour), fromMicros(d)
		return h, err
	}, `SELECT hour, node_energy_j, nodes, estimated_nodes, derived_at FROM site_energy WHERE site_id = ? AND hour >= ? AND hour < ? ORDER BY hour`,
		siteID, micros(from), micros(to))
}

func (db *DB) PartyEnergy(ctx context.Context, siteID string, from, to time.Time) ([]power.PartyHour, error) {
	return collect(db, ctx, func(r scanner) (power.PartyHour, error) {
		var p power.PartyHour
		var hour int64
		var class string
		err := r.Scan(&hour, &p.TenantID, &class, &p.EnergyJ)
		p.Hour, p.Internal = fromMicros(hour), class == "internal"
		return p, err
	}, `SELECT hour, tenant_id, CASE WHEN class = 'internal' THEN 'internal' ELSE '' END AS c, SUM(energy_j) FROM usage_records
		WHERE site_id = ? AND hour >= ? AND hour < ? GROUP BY hour, tenant_id, c ORDER BY hour, tenant_id`, siteID, micros(from), micros(to))
}

func (db *DB) PowerMeterThrough(ctx context.Context) (time.Time, error) {
	var v int64
	err := db.queryRow(ctx, `SELECT through FROM power_meter_state WHERE id = 1`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	return fromMicros(v), db.translate(err)
}

func (db *DB) SetPowerMeterThrough(ctx context.Context, t time.Time) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO power_meter_state (id, through) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET through = excluded.through`, micros(t))
		return err
	})
}

// PutPowerEvent records a power event and the load shed for it.
func (db *DB) PutPowerEvent(ctx context.Context, p power.ShedPlan) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO power_events (id, site_id, at, body) VALUES (?, ?, ?, ?)`, neocloud.NewID("pev_"), p.SiteID, micros(p.At), mustJSON(p))
		return err
	})
}

// PowerEvents lists a site's power events, newest first.
func (db *DB) PowerEvents(ctx context.Context, siteID string, limit int) ([]power.ShedPlan, error) {
	return collect(db, ctx, scanBody[power.ShedPlan], `SELECT body FROM power_events WHERE site_id = ? ORDER BY at DESC LIMIT ?`, siteID, limit)
}

// LiveNodeWork maps each node of a site with live work (an allocation not
// ended) to that work: its reservation, class and contract; committed
// work wins where a node has several.
func (db *DB) LiveNodeWork(ctx context.Context, siteID string) (map[string][3]string, error) {
	rows, err := db.query(ctx, `SELECT a.node_id, r.id, r.class, r.contract_id FROM allocations a JOIN reservations r ON r.id = a.reservation_id
		WHERE a.state <> 'ended' AND r.site_id = ?`, siteID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][3]string{}
	for rows.Next() {
		var n, r, c, ct string
		if err := rows.Scan(&n, &r, &c, &ct); err != nil {
			return nil, db.translate(err)
		}
		if prev, ok := out[n]; !ok || power.Committed(c) && !power.Committed(prev[1]) {
			out[n] = [3]string{r, c, ct}
		}
	}
	return out, db.translate(rows.Err())
}

// LiveNodeClasses maps each node of a site with live work (an allocation
// not ended) to that work's class.
func (db *DB) LiveNodeClasses(ctx context.Context, siteID string) (map[string]string, error) {
	rows, err := db.query(ctx, `SELECT a.node_id, r.class FROM allocations a JOIN reservations r ON r.id = a.reservation_id
		WHERE a.state <> 'ended' AND r.site_id = ?`, siteID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, c string
		if err := rows.Scan(&n, &c); err != nil {
			return nil, db.translate(err)
		}
		if prev, ok := out[n]; !ok || power.Committed(c) && !power.Committed(prev) {
			out[n] = c
		}
	}
	return out, db.translate(rows.Err())
}

// CommittedWork returns a site's committed work (lease, reserved and
// on-demand reservations not cancelled, failed or ended) overlapping
// [from, to).
func (db *DB) CommittedWork(ctx context.Context, siteID string, from, to time.Time) ([]power.CommittedWork, error) {
	return collect(db, ctx, func(r scanner) (power.CommittedWork, error) {
		var w power.CommittedWork
		var s, e int64
		err := r.Scan(&w.SKU, &w.GPUs, &s, &e)
		w.Start, w.End = fromMicros(s), fromMicros(min(e, micros(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))))
		return w, err
	}, `SELECT sku, gpus, start_at, end_at FROM reservations WHERE site_id = ? AND class IN ('lease', 'reserved', 'on_demand')
		AND state NOT IN ('cancelled', 'failed', 'ended') AND start_at < ? AND end_at > ?`, siteID, micros(to), micros(from))
}

// CommittedNodeWork returns, node by node, a site's committed work
// overlapping [from, to): each reservation's GPUs on each of its nodes
// (0: the whole node).
func (db *DB) CommittedNodeWork(ctx context.Context, siteID string, from, to time.Time) ([]power.CommittedWork, error) {
	return collect(db, ctx, func(r scanner) (power.CommittedWork, error) {
		var w power.CommittedWork
		var s, e int64
		var gpus string
		err := r.Scan(&w.NodeID, &gpus, &w.SKU, &s, &e)
		var list []int
		if err == nil && gpus != "" {
			err = json.Unmarshal([]byte(gpus), &list)
		}
		w.GPUs = len(list)
		w.Start, w.End = fromMicros(s), fromMicros(min(e, micros(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))))
		return w, err
	}, `SELECT n.node_id, n.gpus, r.sku, r.start_at, r.end_at FROM reservations r JOIN reservation_nodes n ON n.reservation_id = r.id
		WHERE r.site_id = ? AND r.class IN ('lease', 'reserved', 'on_demand')
		AND r.state NOT IN ('cancelled', 'failed', 'ended') AND r.start_at < ? AND r.end_at > ?`, siteID, micros(to), micros(from))
}

// PutPermitWarning records a permit warning once per site, year and limit;
// the first also appends an operator event (no tenant).
func (db *DB) PutPermitWarning(ctx context.Context, w power.PermitWarning) (bool, error) {
	var first bool
	err := db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `INSERT INTO permit_warnings (site_id, year, limit_name, at, body) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (site_id, year, limit_name) DO NOTHING`, w.SiteID, w.Year, w.Limit, micros(w.At), mustJSON(w))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		first = true
		_, err = db.AppendEvent(ctx, sales.Event{ID: neocloud.NewID(sales.PrefixEvent), Kind: "power.permit_warning", Subject: w.SiteID,
			Data: map[string]any{"year": w.Year, "limit": w.Limit, "used": w.Used, "max": w.Max, "per_day": w.PerDay, "crosses_at": w.CrossesAt, "exceeded": w.Exceeded}, At: w.At})
		return err
	})
	return first, err
}

// PutFeedReadings stores supply-meter hours; a reading of an hour already
// stored replaces it.
func (db *DB) PutFeedReadings(ctx context.Context, siteID string, rs []power.FeedReading, at time.Time) error {
	return db.write(ctx, func(ctx context.Context) error {
		for lo := 0; lo < len(rs); lo += 200 {
			chunk := rs[lo:min(len(rs), lo+200)]
			args := make([]any, 0, 5*len(chunk))
			for _, r := range chunk {
				args = append(args, siteID, r.Feed, micros(r.Hour), r.Wh, micros(at))
			}
			if _, err := db.exec(ctx, `INSERT INTO feed_readings (site_id, feed, hour, wh, at) VALUES (?, ?, ?, ?, ?)`+strings.Repeat(", (?, ?, ?, ?, ?)", len(chunk)-1)+`
				ON CONFLICT (site_id, hour, feed) DO UPDATE SET wh = excluded.wh, at = excluded.at`, args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// FeedReadings returns a site's supply-meter hours in [from, to).
func (db *DB) FeedReadings(ctx context.Context, siteID string, from, to time.Time) ([]power.FeedReading, error) {
	return collect(db, ctx, func(r scanner) (power.FeedReading, error) {
		var x power.FeedReading
		var h int64
		err := r.Scan(&x.Feed, &h, &x.Wh)
		x.Hour = fromMicros(h)
		return x, err
	}, `SELECT feed, hour, wh FROM feed_readings WHERE site_id = ? AND hour >= ? AND hour < ? ORDER BY hour, feed`, siteID, micros(from), micros(to))
}

// ReservationEnergy sums a tenant's usage records at a site in [from, to)
// by reservation, in joules.
func (db *DB) ReservationEnergy(ctx context.Context, siteID, tenantID string, from, to time.Time) (map[string]int64, error) {
	rows, err := db.query(ctx, `SELECT reservation_id, SUM(energy_j) FROM usage_records
		WHERE site_id = ? AND tenant_id = ? AND hour >= ? AND hour < ? GROUP BY reservation_id`, siteID, tenantID, micros(from), micros(to))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var j int64
		if err := rows.Scan(&id, &j); err != nil {
			return nil, db.translate(err)
		}
		out[id] = j
	}
	return out, db.translate(rows.Err())
}
