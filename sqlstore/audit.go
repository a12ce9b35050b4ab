package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/audit"
)

var _ audit.Store = (*DB)(nil)

// AppendAudit appends r to the chain within the context's transaction (or
// its own). Moving the head row first takes its lock on PostgreSQL, so
// concurrent appends serialize and the chain never forks.
func (db *DB) AppendAudit(ctx context.Context, r audit.Record) (audit.Record, error) {
	err := db.write(ctx, func(ctx context.Context) error {
		var prev string
		if err := db.queryRow(ctx, `UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash`).Scan(&r.Seq, &prev); err != nil {
			return db.translate(fmt.Errorf("audit head: %w", err))
		}
		r.PrevHash = prev
		r.At = r.At.UTC().Truncate(time.Microsecond) // as stored
		r.Hash = r.ComputeHash()
		if _, err := db.exec(ctx, `UPDATE audit_head SET hash = ? WHERE id = 1`, r.Hash); err != nil {
			return err
		}
		_, err := db.exec(ctx, `INSERT INTO audit (seq, id, at, actor, actor_role, actor_tenant, tenant, action, object, status, result, request_id, source, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Seq, r.ID, micros(r.At), r.Actor, r.ActorRole, r.ActorTenant, r.Tenant, r.Action, r.Object, r.Status, r.Result, r.RequestID, r.Source, r.PrevHash, r.Hash)
		return err
	})
	return r, err
}

const auditCols = `seq, id, at, actor, actor_role, actor_tenant, tenant, action, object, status, result, request_id, source, prev_hash, hash`

func scanAudit(row interface{ Scan(...any) error }) (audit.Record, error) {
	var r audit.Record
	var at int64
	err := row.Scan(&r.Seq, &r.ID, &at, &r.Actor, &r.ActorRole, &r.ActorTenant, &r.Tenant, &r.Action, &r.Object, &r.Status, &r.Result, &r.RequestID, &r.Source, &r.PrevHash, &r.Hash)
	r.At = fromMicros(at)
	return r, err
}

// Audit lists records newest first; the cursor is the last seq seen.
func (db *DB) Audit(ctx context.Context, f audit.Filter, p neocloud.Page) ([]audit.Record, error) {
	q := `SELECT ` + auditCols + ` FROM audit WHERE 1 = 1`
	var args []any
	if after := p.After(); after != "" {
		var seq int64
		if _, err := fmt.Sscan(after, &seq); err != nil {
			return nil, neocloud.Invalid("query.cursor", "is not a cursor this server issued")
		}
		q += ` AND seq < ?`
		args = append(args, seq)
	}
	if f.Tenant != "" {
		q += ` AND (tenant = ? OR actor_tenant = ?)`
		args = append(args, f.Tenant, f.Tenant)
	}
	for _, c := range []struct{ col, v string }{{"actor", f.Actor}, {"action", f.Action}, {"result", f.Result}} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	if !f.Since.IsZero() {
		q += ` AND at >= ?`
		args = append(args, micros(f.Since))
	}
	if !f.Until.IsZero() {
		q += ` AND at < ?`
		args = append(args, micros(f.Until))
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	return collect(db, ctx, scanAudit, q, append(args, p.Limit)...)
}

// ScanAudit visits every record in chain order, in batches.
func (db *DB) ScanAudit(ctx context.Context, fn func(audit.Record) error) error {
	var after int64
	for {
		rows, err := db.query(ctx, `SELECT `+auditCols+` FROM audit WHERE seq > ? ORDER BY seq LIMIT 5000`, after)
		if err != nil {
			return err
		}
		var batch []audit.Record
		for rows.Next() {
			r, err := scanAudit(rows)
			if err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return db.translate(err)
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
			after = r.Seq
		}
		if len(batch) < 5000 {
			return nil
		}
	}
}
