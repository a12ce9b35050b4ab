package sqlstore

import (
	"context"
	"strings"
	"time"

	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
)

// NodeUses returns every live allocation (not ended) with its
// reservation's class: what each node serves now, in one query.
func (db *DB) NodeUses(ctx context.Context) ([]sales.NodeUse, error) {
	rows, err := db.query(ctx, `SELECT a.node_id, a.tenant_id, a.reservation_id, r.class, a.state, a.gpus
		FROM allocations a JOIN reservations r ON r.id = a.reservation_id WHERE a.state <> 'ended' ORDER BY a.node_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sales.NodeUse
	for rows.Next() {
		var u sales.NodeUse
		var class, state, gpus string
		if err := rows.Scan(&u.NodeID, &u.TenantID, &u.ReservationID, &class, &state, &gpus); err != nil {
			return nil, err
		}
		u.Class, u.State = placement.Class(class), sales.AllocationState(state)
		// gpus is a JSON list of indexes: count them without decoding.
		if t := strings.Trim(gpus, "[] "); t != "" {
			u.GPUs = strings.Count(t, ",") + 1
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// ReservationCounts counts reservations by class and state.
func (db *DB) ReservationCounts(ctx context.Context) ([]sales.ReservationCount, error) {
	rows, err := db.query(ctx, `SELECT class, state, COUNT(*) FROM reservations GROUP BY class, state ORDER BY class, state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sales.ReservationCount
	for rows.Next() {
		var c sales.ReservationCount
		var class, state string
		if err := rows.Scan(&class, &state, &c.Count); err != nil {
			return nil, err
		}
		c.Class, c.State = placement.Class(class), sales.ReservationState(state)
		out = append(out, c)
	}
	return out, rows.Err()
}

// RecentReservations returns the newest reservations matching f, newest
// first.
func (db *DB) RecentReservations(ctx context.Context, f sales.ReservationFilter, limit int) ([]sales.Reservation, error) {
	where, args := []string{"1 = 1"}, []any{}
	if f.TenantID != "" {
		where, args = append(where, "tenant_id = ?"), append(args, f.TenantID)
	}
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	if f.Class != "" {
		where, args = append(where, "class = ?"), append(args, string(f.Class))
	}
	return collect(db, ctx, scanBody[sales.Reservation], `SELECT body FROM reservations WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
}

// PutUsePoint records one point of the utilization series (JSON) and
// forgets points older than keep before it.
func (db *DB) PutUsePoint(ctx context.Context, at time.Time, body []byte, keep time.Duration) error {
	return db.write(ctx, func(ctx context.Context) error {
		if _, err := db.exec(ctx, `INSERT INTO use_points (at, body) VALUES (?, ?) ON CONFLICT (at) DO UPDATE SET body = excluded.body`, micros(at), string(body)); err != nil {
			return err
		}
		_, err := db.exec(ctx, `DELETE FROM use_points WHERE at < ?`, micros(at.Add(-keep)))
		return err
	})
}

// UsePoints returns the newest points of the utilization series, oldest
// first.
func (db *DB) UsePoints(ctx context.Context, limit int) ([][]byte, error) {
	rows, err := db.query(ctx, `SELECT body FROM (SELECT at, body FROM use_points ORDER BY at DESC LIMIT ?) p ORDER BY at`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, []byte(b))
	}
	return out, rows.Err()
}
