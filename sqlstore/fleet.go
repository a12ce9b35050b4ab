package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
)

var _ fleet.Store = (*DB)(nil)

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("sqlstore: marshal: " + err.Error())
	}
	return string(b)
}

// fromJSON decodes a column stored as JSON text (mustJSON's) into v; a
// column that does not decode is an error naming it, never a zero value
// read as if it had been stored.
func fromJSON(column, text string, v any) error {
	if err := json.Unmarshal([]byte(text), v); err != nil {
		return fmt.Errorf("sqlstore: stored %s does not decode: %w", column, err)
	}
	return nil
}

func (db *DB) PutSKUs(ctx context.Context, skus []fleet.SKU) error {
	return db.write(ctx, func(ctx context.Context) error {
		for _, s := range skus {
			if _, err := db.exec(ctx, `INSERT INTO skus (name, spec) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec`, s.Name, mustJSON(s)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (db *DB) SKUs(ctx context.Context) ([]fleet.SKU, error) {
	rows, err := db.query(ctx, `SELECT spec FROM skus ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []fleet.SKU
	for rows.Next() {
		var spec string
		if err := rows.Scan(&spec); err != nil {
			return nil, err
		}
		var s fleet.SKU
		if err := json.Unmarshal([]byte(spec), &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, db.translate(rows.Err())
}

const siteCols = `id, name, region, timezone, levels, hierarchies, power, policy, economics, created_at, updated_at`

func scanSite(row interface{ Scan(...any) error }) (fleet.Site, error) {
	var s fleet.Site
	var levels, hier, power, policy, economics string
	var c, u int64
	if err := row.Scan(&s.ID, &s.Name, &s.Region, &s.Timezone, &levels, &hier, &power, &policy, &economics, &c, &u); err != nil {
		return s, err
	}
	s.CreatedAt, s.UpdatedAt = fromMicros(c), fromMicros(u)
	return s, errors.Join(fromJSON("sites.policy", policy, &s.Policy), fromJSON("sites.levels", levels, &s.Levels),
		fromJSON("sites.hierarchies", hier, &s.Hierarchies), fromJSON("sites.power", power, &s.Power), fromJSON("sites.economics", economics, &s.Economics))
}

func (db *DB) SiteByName(ctx context.Context, name string) (fleet.Site, error) {
	s, err := scanSite(db.queryRow(ctx, `SELECT `+siteCols+` FROM sites WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return s, neocloud.NotFound("site", name)
	}
	return s, db.translate(err)
}

func (db *DB) PutSite(ctx context.Context, s fleet.Site) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO sites (`+siteCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET region = excluded.region, timezone = excluded.timezone, levels = excluded.levels,
			hierarchies = excluded.hierarchies, power = excluded.power, policy = excluded.policy, economics = excluded.economics, updated_at = excluded.updated_at`,
			s.ID, s.Name, s.Region, s.Timezone, mustJSON(s.Levels), mustJSON(s.Hierarchies), mustJSON(s.Power), mustJSON(s.Policy), mustJSON(s.Economics), micros(s.CreatedAt), micros(s.UpdatedAt))
		return err
	})
}

func (db *DB) Sites(ctx context.Context) ([]fleet.Site, error) {
	return collect(db, ctx, scanSite, `SELECT `+siteCols+` FROM sites ORDER BY name`)
}

const nodeCols = `n.id, n.site_id, s.name, n.hostname, n.serial, n.sku, n.domain, n.hierarchies, n.lifecycle, n.health, n.health_reasons, n.cordoned, n.spare, n.version, n.created_at, n.updated_at`

func scanNode(row interface{ Scan(...any) error }) (fleet.Node, error) {
	var n fleet.Node
	var hier, reasons string
	var c, u int64
	if err := row.Scan(&n.ID, &n.SiteID, &n.Site, &n.Hostname, &n.Serial, &n.SKU, &n.Domain, &hier, &n.Lifecycle, &n.Health, &reasons, &n.Cordoned, &n.Spare, &n.Version, &c, &u); err != nil {
		return n, err
	}
	n.CreatedAt, n.UpdatedAt = fromMicros(c), fromMicros(u)
	return n, errors.Join(fromJSON("nodes.hierarchies", hier, &n.Hierarchies), fromJSON("nodes.health_reasons", reasons, &n.HealthReasons))
}

// nodes runs a node query and attaches GPUs.
func (db *DB) nodes(ctx context.Context, where string, args ...any) ([]fleet.Node, error) {
	rows, err := db.query(ctx, `SELECT `+nodeCols+` FROM nodes n JOIN sites s ON s.id = n.site_id `+where+` ORDER BY n.id`, args...)
	if err != nil {
		return nil, err
	}
	var out []fleet.Node
	idx := map[string]int{}
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		idx[n.ID] = len(out)
		out = append(out, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, db.translate(err)
	}
	grows, err := db.query(ctx, `SELECT g.node_id, g.idx, COALESCE(g.uuid, ''), g.model, g.memory_mib FROM gpus g JOIN nodes n ON n.id = g.node_id `+where+` ORDER BY g.node_id, g.idx`, args...)
	if err != nil {
		return nil, err
	}
	defer grows.Close()
	for grows.Next() {
		var id string
		var g fleet.GPU
		if err := grows.Scan(&id, &g.Index, &g.UUID, &g.Model, &g.MemoryMiB); err != nil {
			return nil, err
		}
		if i, ok := idx[id]; ok {
			out[i].GPUs = append(out[i].GPUs, g)
		}
	}
	return out, db.translate(grows.Err())
}

func (db *DB) SiteNodes(ctx context.Context, siteID string) ([]fleet.Node, error) {
	return db.nodes(ctx, `WHERE n.site_id = ?`, siteID)
}

func (db *DB) AllNodes(ctx context.Context) ([]fleet.Node, error) { return db.nodes(ctx, ``) }

func (db *DB) NodeVersions(ctx context.Context) (map[string]int64, error) {
	type idVersion struct {
		id string
		v  int64
	}
	rows, err := collect(db, ctx, func(r scanner) (idVersion, error) {
		var x idVersion
		return x, r.Scan(&x.id, &x.v)
	}, `SELECT id, version FROM nodes`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(rows))
	for _, x := range rows {
		out[x.id] = x.v
	}
	return out, nil
}

func (db *DB) NodeVersionSum(ctx context.Context) (count, sum int64, err error) {
	err = db.queryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(version), 0) FROM nodes`).Scan(&count, &sum)
	return count, sum, db.translate(err)
}

func (db *DB) NodesByID(ctx context.Context, ids []string) ([]fleet.Node, error) {
	var out []fleet.Node
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		ns, err := db.nodes(ctx, `WHERE n.id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, ns...)
	}
	return out, nil
}

func (db *DB) Node(ctx context.Context, id string) (fleet.Node, error) {
	ns, err := db.nodes(ctx, `WHERE n.id = ?`, id)
	if err != nil {
		return fleet.Node{}, err
	}
	if len(ns) == 0 {
		return fleet.Node{}, neocloud.NotFound("node", id)
	}
	return ns[0], nil
}

// insertBatches inserts rows with multi-row VALUES statements.
func (db *DB) insertBatches(ctx context.Context, head string, cols, n int, row func(i int) []any) error {
	return db.insertBatchesThen(ctx, head, "", cols, n, row)
}

// insertBatchesThen is insertBatches with a clause after the values (ON
// CONFLICT …).
func (db *DB) insertBatchesThen(ctx context.Context, head, tail string, cols, n int, row func(i int) []any) error {
	per := 16000 / cols
	for start := 0; start < n; start += per {
		end := min(n, start+per)
		var b strings.Builder
		b.WriteString(head)
		b.WriteString(" VALUES ")
		ph := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
		args := make([]any, 0, (end-start)*cols)
		for i := start; i < end; i++ {
			if i > start {
				b.WriteString(", ")
			}
			b.WriteString(ph)
			args = append(args, row(i)...)
		}
		if tail != "" {
			b.WriteString(" ")
			b.WriteString(tail)
		}
		if _, err := db.exec(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) InsertNodes(ctx context.Context, nodes []fleet.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	return db.write(ctx, func(ctx context.Context) error {
		err := db.insertBatches(ctx, `INSERT INTO nodes (id, site_id, hostname, serial, sku, domain, hierarchies, lifecycle, health, health_reasons, cordoned, spare, version, created_at, updated_at)`, 15, len(nodes), func(i int) []any {
			n := nodes[i]
			return []any{n.ID, n.SiteID, n.Hostname, n.Serial, n.SKU, n.Domain, mustJSON(n.Hierarchies), string(n.Lifecycle), string(n.Health), mustJSON(n.HealthReasons), n.Cordoned, n.Spare, n.Version, micros(n.CreatedAt), micros(n.UpdatedAt)}
		})
		if neocloud.ErrorKind(err) == neocloud.KindConflict {
			return &neocloud.Error{Kind: neocloud.KindConflict, Field: "spec nodes", State: "exists", Message: "a hostname in the spec belongs to a node of another site", Err: err}
		}
		if err != nil {
			return err
		}
		return db.insertGPUs(ctx, nodes)
	})
}

func (db *DB) insertGPUs(ctx context.Context, nodes []fleet.Node) error {
	type ref struct{ n, g int }
	var refs []ref
	for i, n := range nodes {
		for j := range n.GPUs {
			refs = append(refs, ref{i, j})
		}
	}
	return db.insertBatches(ctx, `INSERT INTO gpus (node_id, idx, uuid, model, memory_mib)`, 5, len(refs), func(i int) []any {
		n := nodes[refs[i].n]
		g := n.GPUs[refs[i].g]
		return []any{n.ID, g.Index, nullString(g.UUID), g.Model, g.MemoryMiB}
	})
}

func (db *DB) UpdateNodes(ctx context.Context, nodes []fleet.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	return db.write(ctx, func(ctx context.Context) error {
		for _, n := range nodes {
			res, err := db.exec(ctx, `UPDATE nodes SET serial = ?, sku = ?, domain = ?, hierarchies = ?, lifecycle = ?, health = ?, health_reasons = ?,
				cordoned = ?, spare = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?`,
				n.Serial, n.SKU, n.Domain, mustJSON(n.Hierarchies), string(n.Lifecycle), string(n.Health), mustJSON(n.HealthReasons),
				n.Cordoned, n.Spare, n.Version, micros(n.UpdatedAt), n.ID, n.Version-1)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k != 1 {
				return neocloud.Conflict("changed", "node %s changed meanwhile; retry", n.Hostname)
			}
		}
		return nil
	})
}

// PutGPUs replaces the GPU rows of the given nodes with their GPUs.
func (db *DB) PutGPUs(ctx context.Context, nodes []fleet.Node) error {
	if len(nodes) == 0 {
		return nil
	}
	return db.write(ctx, func(ctx context.Context) error {
		for _, n := range nodes {
			if _, err := db.exec(ctx, `DELETE FROM gpus WHERE node_id = ?`, n.ID); err != nil {
				return err
			}
		}
		return db.insertGPUs(ctx, nodes)
	})
}

func (db *DB) LogHealth(ctx context.Context, c fleet.HealthChange) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO node_health_log (node_id, at, seq, health, reasons)
			VALUES (?, ?, (SELECT COUNT(*) FROM node_health_log WHERE node_id = ? AND at = ?), ?, ?)`,
			c.NodeID, micros(c.At), c.NodeID, micros(c.At), string(c.Health), mustJSON(c.Reasons))
		return err
	})
}

// HealthLog returns the health changes of the given nodes in [from, to),
// and each node's last change before from (its health at from), reading
// 500 nodes a statement.
func (db *DB) HealthLog(ctx context.Context, nodeIDs []string, from, to time.Time) ([]fleet.HealthChange, error) {
	scan := func(r scanner) (fleet.HealthChange, error) {
		var c fleet.HealthChange
		var at int64
		var h, reasons string
		err := r.Scan(&c.NodeID, &at, &h, &reasons)
		c.At, c.Health = fromMicros(at), fleet.Health(h)
		if err == nil {
			err = json.Unmarshal([]byte(reasons), &c.Reasons)
		}
		return c, err
	}
	var out []fleet.HealthChange
	for start := 0; start < len(nodeIDs); start += 500 {
		chunk := nodeIDs[start:min(len(nodeIDs), start+500)]
		args := []any{micros(to)}
		for _, id := range chunk {
			args = append(args, id)
		}
		all, err := collect(db, ctx, scan, `SELECT node_id, at, health, reasons FROM node_health_log WHERE at < ? AND node_id IN (?`+
			strings.Repeat(", ?", len(chunk)-1)+`) ORDER BY node_id, at, seq`, args...)
		if err != nil {
			return nil, err
		}
		for i, c := range all {
			last := i+1 == len(all) || all[i+1].NodeID != c.NodeID || !all[i+1].At.Before(from)
			if !c.At.Before(from) || last {
				out = append(out, c)
			}
		}
	}
	return out, nil
}
