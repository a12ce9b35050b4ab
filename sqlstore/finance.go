package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/neocloud/neocloud/finance"
	"github.com/neocloud/neocloud/sales"
)

var _ finance.Store = (*DB)(nil)

// SiteAllocations returns a site's allocations that may overlap [from,
// to) — bound before to, not ended before from — with their reservation's
// class.
func (db *DB) SiteAllocations(ctx context.Context, siteID string, from, to time.Time) ([]finance.Allocation, error) {
	rows, err := db.query(ctx, `SELECT a.body, r.class FROM allocations a JOIN reservations r ON r.id = a.reservation_id
		WHERE r.site_id = ? AND a.created_at < ? AND (a.state <> 'ended' OR a.updated_at >= ?)`, siteID, micros(to), micros(from))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []finance.Allocation
	for rows.Next() {
		var body, class string
		if err := rows.Scan(&body, &class); err != nil {
			return nil, db.translate(err)
		}
		var a sales.Allocation
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			return nil, err
		}
		out = append(out, finance.Allocation{Allocation: a, Class: class})
	}
	return out, db.translate(rows.Err())
}

// DownSpans returns the spans a site's nodes were out of service in
// [from, to): repair tickets (repair, burn-in, sanitizing) from opening
// to closing, and sanitize records between tenants.
func (db *DB) DownSpans(ctx context.Context, siteID string, from, to time.Time) (map[string][]finance.Interval, error) {
	out := map[string][]finance.Interval{}
	for _, q := range []string{
		`SELECT t.node_id, t.opened_at, COALESCE(t.closed_at, 0) FROM repair_tickets t JOIN nodes n ON n.id = t.node_id
			WHERE n.site_id = ? AND t.opened_at < ? AND (t.closed_at IS NULL OR t.closed_at > ?)`,
		`SELECT s.node_id, s.started_at, s.finished_at FROM sanitize_records s JOIN nodes n ON n.id = s.node_id
			WHERE n.site_id = ? AND s.started_at < ? AND s.finished_at > ?`,
	} {
		type span struct {
			node string
			a, b int64
		}
		spans, err := collect(db, ctx, func(r scanner) (span, error) {
			var s span
			return s, r.Scan(&s.node, &s.a, &s.b)
		}, q, siteID, micros(to), micros(from))
		if err != nil {
			return nil, err
		}
		for _, s := range spans {
			end := to
			if s.b != 0 {
				end = fromMicros(s.b)
			}
			out[s.node] = append(out[s.node], finance.Interval{From: fromMicros(s.a), To: end})
		}
	}
	return out, nil
}

// CommittedUntil returns when a site's committed work (lease, reserved)
// not cancelled, failed or ended and ending after t ends (zero: none).
func (db *DB) CommittedUntil(ctx context.Context, siteID string, t time.Time) (time.Time, error) {
	var end sql.NullInt64
	err := db.queryRow(ctx, `SELECT MAX(end_at) FROM reservations WHERE site_id = ? AND class IN ('lease', 'reserved')
		AND state NOT IN ('cancelled', 'failed', 'ended') AND end_at > ?`, siteID, micros(t)).Scan(&end)
	if err != nil || !end.Valid {
		return time.Time{}, db.translate(err)
	}
	return fromMicros(end.Int64), nil
}

// NodeHourUtilization sums a site's node-minutes with reports in [from,
// to) by node and hour: how many minutes, and the sum of each minute's
// mean GPU utilization (percent).
func (db *DB) NodeHourUtilization(ctx context.Context, siteID string, from, to time.Time) ([]finance.NodeHour, error) {
	if err := db.tel.settle(ctx, db); err != nil {
		return nil, err
	}
	return collect(db, ctx, func(r scanner) (finance.NodeHour, error) {
		var h finance.NodeHour
		var hour int64
		err := r.Scan(&h.NodeID, &hour, &h.Minutes, &h.UtilPctSum)
		h.Hour = fromMicros(hour)
		return h, err
	}, `SELECT m.node_id, m.minute - (m.minute % 3600000000) AS hour, COUNT(*), SUM(m.util_sum / m.samples) FROM node_minutes m JOIN nodes n ON n.id = m.node_id
		WHERE n.site_id = ? AND m.minute >= ? AND m.minute < ? AND m.samples > 0 GROUP BY m.node_id, m.minute - (m.minute % 3600000000)`, siteID, micros(from), micros(to))
}
