package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/neocloud/neocloud"
)

// ReplicaKept is how long a replica that stopped, or fell silent, stays
// listed.
const ReplicaKept = 7 * 24 * time.Hour

// PutReplica records a replica as seen at r.SeenAt (and stopped at
// r.StoppedAt, when set), and forgets those not seen for ReplicaKept.
func (db *DB) PutReplica(ctx context.Context, r neocloud.Replica) error {
	return db.write(ctx, func(ctx context.Context) error {
		if _, err := db.exec(ctx, `INSERT INTO replicas (id, host, addr, pid, version, started_at, seen_at, stopped_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, stopped_at = excluded.stopped_at`,
			r.ID, r.Host, r.Addr, r.PID, r.Version, micros(r.StartedAt), micros(r.SeenAt), nullMicros(r.StoppedAt)); err != nil {
			return err
		}
		_, err := db.exec(ctx, `DELETE FROM replicas WHERE seen_at < ?`, micros(r.SeenAt.Add(-ReplicaKept)))
		return err
	})
}

// ReleaseLeases gives up the leases holder holds, for a replica that
// stops cleanly: another takes each over at its next try rather than when
// it runs out. A write of the holder's still under way is fenced out (or
// finishes first: the release waits for its fence).
func (db *DB) ReleaseLeases(ctx context.Context, holder string) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `UPDATE leases SET until = 0 WHERE holder = ?`, holder)
		return err
	})
}

// Replicas lists the replicas recorded, the latest started first, each
// with the work it leads (the leases it holds) at now and its state then.
func (db *DB) Replicas(ctx context.Context, now time.Time) ([]neocloud.Replica, error) {
	rs, err := collect(db, ctx, func(s interface{ Scan(...any) error }) (neocloud.Replica, error) {
		var r neocloud.Replica
		var started, seen int64
		var stopped sql.NullInt64
		err := s.Scan(&r.ID, &r.Host, &r.Addr, &r.PID, &r.Version, &started, &seen, &stopped)
		r.StartedAt, r.SeenAt = fromMicros(started), fromMicros(seen)
		if stopped.Valid {
			at := fromMicros(stopped.Int64)
			r.StoppedAt = &at
		}
		r.Leads = []string{}
		return r, err
	}, `SELECT id, host, addr, pid, version, started_at, seen_at, stopped_at FROM replicas ORDER BY started_at DESC, id DESC`)
	if err != nil {
		return nil, err
	}
	type held struct{ name, holder string }
	leases, err := collect(db, ctx, func(s interface{ Scan(...any) error }) (held, error) {
		var h held
		return h, s.Scan(&h.name, &h.holder)
	}, `SELECT name, holder FROM leases WHERE until >= ? ORDER BY name`, micros(now))
	if err != nil {
		return nil, err
	}
	for i := range rs {
		for _, l := range leases {
			if l.holder == rs[i].ID && rs[i].StoppedAt == nil {
				rs[i].Leads = append(rs[i].Leads, l.name)
			}
		}
		rs[i].State = rs[i].StateAt(now)
	}
	return rs, nil
}
