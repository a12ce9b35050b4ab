package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
)

var _ sales.Store = (*DB)(nil)

type scanner = interface{ Scan(...any) error }

// endMicros stores an open end as the largest value.
func endMicros(t *time.Time) int64 {
	if t == nil {
		return math.MaxInt64
	}
	return micros(*t)
}

func (db *DB) Prices(ctx context.Context) ([]pricing.Price, error) {
	out, err := collect(db, ctx, func(r scanner) (pricing.Price, error) {
		var p pricing.Price
		var eff, created int64
		var terms, vol string
		if err := r.Scan(&p.ID, &p.SKU, &p.Class, &eff, &p.ListMicros, &terms, &vol, &p.SpotFloor, &p.SpotCeiling, &p.Currency, &p.CreatedBy, &created); err != nil {
			return p, err
		}
		p.EffectiveAt, p.CreatedAt = fromMicros(eff), fromMicros(created)
		p.List = pricing.FormatMicros(p.ListMicros)
		return p, errors.Join(fromJSON("prices.term_discounts", terms, &p.TermDiscounts), fromJSON("prices.volume_tiers", vol, &p.VolumeTiers))
	}, `SELECT id, sku, class, effective_at, list_micros, term_discounts, volume_tiers, spot_floor_micros, spot_ceiling_micros, currency, created_by, created_at
		FROM prices ORDER BY sku, class, effective_at`)
	return out, err
}

func (db *DB) InsertPrice(ctx context.Context, p pricing.Price) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO prices (id, sku, class, effective_at, list_micros, term_discounts, volume_tiers, spot_floor_micros, spot_ceiling_micros, currency, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.ID, p.SKU, p.Class, micros(p.EffectiveAt), p.ListMicros, mustJSON(nonNil(p.TermDiscounts)), mustJSON(nonNil(p.VolumeTiers)),
			p.SpotFloor, p.SpotCeiling, p.Currency, p.CreatedBy, micros(p.CreatedAt))
		if neocloud.ErrorKind(err) == neocloud.KindConflict {
			return neocloud.Conflict("exists", "a %s %s price already takes effect at that instant", p.Class, p.SKU)
		}
		return err
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (db *DB) PutQuota(ctx context.Context, q sales.Quota) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO quotas (tenant_id, sku, class, gpus, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, sku, class) DO UPDATE SET gpus = excluded.gpus, updated_at = excluded.updated_at`,
			q.TenantID, q.SKU, string(q.Class), q.GPUs, micros(q.UpdatedAt))
		return err
	})
}

func (db *DB) Quotas(ctx context.Context, tenantID string) ([]sales.Quota, error) {
	q := `SELECT tenant_id, sku, class, gpus, updated_at FROM quotas`
	var args []any
	if tenantID != "" {
		q += ` WHERE tenant_id = ?`
		args = append(args, tenantID)
	}
	return collect(db, ctx, func(r scanner) (sales.Quota, error) {
		var x sales.Quota
		var u int64
		err := r.Scan(&x.TenantID, &x.SKU, &x.Class, &x.GPUs, &u)
		x.UpdatedAt = fromMicros(u)
		return x, err
	}, q+` ORDER BY tenant_id, sku, class`, args...)
}

// LockSitePower makes the transaction in ctx the only one, until it ends,
// that admits work against a site's power (on SQLite the write transaction
// alone does).
func (db *DB) LockSitePower(ctx context.Context, siteID string) error {
	return db.advisoryLock(ctx, 7311004, siteID)
}

// advisoryLock takes, on PostgreSQL, a lock on (class, key) held until the
// transaction in ctx ends; on SQLite the IMMEDIATE write transaction holds
// the whole database already.
func (db *DB) advisoryLock(ctx context.Context, class int, key string) error {
	return db.write(ctx, func(ctx context.Context) error {
		if db.Dialect != Postgres {
			return nil
		}
		_, err := db.exec(ctx, `SELECT pg_advisory_xact_lock(?, hashtext(?))`, class, key)
		return err
	})
}

func (db *DB) LockTenantLimits(ctx context.Context, tenantID string) error {
	return db.advisoryLock(ctx, 7311003, tenantID)
}

func (db *DB) HeldGPUs(ctx context.Context, tenantID, sku string, class sales.Class, start, end, now time.Time) (int64, error) {
	e := micros(end)
	if end.Year() > 9000 {
		e = math.MaxInt64
	}
	var n int64
	rs, err := collect(db, ctx, scanBody[sales.Reservation], `SELECT body FROM reservations WHERE tenant_id = ? AND sku = ? AND class = ? AND state IN ('pending','scheduled','active','ending')
		AND start_at < ? AND end_at > ?`, tenantID, sku, string(class), e, micros(start))
	if err != nil {
		return 0, err
	}
	for _, r := range rs {
		n += int64(r.Shape.GPUs)
	}
	qs, err := collect(db, ctx, scanBody[sales.Quote], `SELECT body FROM quotes WHERE tenant_id = ? AND state = 'open' AND hold AND expires_at > ?`, tenantID, micros(now))
	if err != nil {
		return 0, err
	}
	for _, q := range qs {
		if q.Shape.SKU == sku && q.Shape.Class == class && q.Shape.Start.Before(end) && (q.Shape.End == nil || q.Shape.End.After(start)) {
			n += int64(q.Shape.GPUs)
		}
	}
	return n, nil
}

func scanBody[T any](r scanner) (T, error) {
	var v T
	var body string
	if err := r.Scan(&body); err != nil {
		return v, err
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return v, fmt.Errorf("sqlstore: stored %T body does not decode: %w", v, err)
	}
	return v, nil
}

func (db *DB) InsertQuote(ctx context.Context, q sales.Quote) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO quotes (id, tenant_id, state, hold, body, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			q.ID, q.TenantID, q.State, q.Hold && q.Offer.Available, mustJSON(q), micros(q.ExpiresAt), micros(q.CreatedAt))
		return err
	})
}

// closedOpen finishes closing a row that was to be open (an UPDATE … WHERE
// id = ? AND state = 'open', whose result is res): one row changed is
// done; else the row's state now is a conflict naming it, or the row is
// not there.
func (db *DB) closedOpen(ctx context.Context, res sql.Result, table, what, id string) error {
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var state string
	if err := db.queryRow(ctx, `SELECT state FROM `+table+` WHERE id = ?`, id).Scan(&state); errors.Is(err, sql.ErrNoRows) {
		return neocloud.NotFound(what, id)
	} else if err != nil {
		return db.translate(err)
	}
	return neocloud.Conflict(state, "%s %s is %s", what, id, state)
}

func (db *DB) UpdateQuote(ctx context.Context, q sales.Quote) error {
	return db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `UPDATE quotes SET state = ?, body = ? WHERE id = ? AND state = 'open'`, q.State, mustJSON(q), q.ID)
		if err != nil {
			return err
		}
		return db.closedOpen(ctx, res, "quotes", "quote", q.ID)
	})
}

func (db *DB) Quote(ctx context.Context, id string) (sales.Quote, error) {
	q, err := scanBody[sales.Quote](db.queryRow(ctx, `SELECT body FROM quotes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return q, neocloud.NotFound("quote", id)
	}
	return q, db.translate(err)
}

func (db *DB) Quotes(ctx context.Context, tenantID string, pg neocloud.Page) ([]sales.Quote, error) {
	q, args := `SELECT body FROM quotes WHERE id > ?`, []any{pg.After()}
	if tenantID != "" {
		q += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	return collect(db, ctx, scanBody[sales.Quote], q+` ORDER BY id LIMIT ?`, append(args, limitOf(pg))...)
}

func limitOf(pg neocloud.Page) int {
	if pg.Limit <= 0 {
		return 100
	}
	return pg.Limit
}

func (db *DB) OpenHolds(ctx context.Context, siteID, sku string) ([]sales.Quote, error) {
	all, err := collect(db, ctx, scanBody[sales.Quote], `SELECT body FROM quotes WHERE state = 'open' AND hold ORDER BY id`)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, q := range all {
		if q.Shape.Site == siteID && q.Shape.SKU == sku {
			out = append(out, q)
		}
	}
	return out, nil
}

func (db *DB) CountHolds(ctx context.Context, tenantID string, now time.Time) (int, error) {
	var n int
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM quotes WHERE tenant_id = ? AND state = 'open' AND hold AND expires_at > ?`, tenantID, micros(now)).Scan(&n)
	return n, db.translate(err)
}

func (db *DB) ExpiredQuotes(ctx context.Context, now time.Time, limit int) ([]sales.Quote, error) {
	return collect(db, ctx, scanBody[sales.Quote], `SELECT body FROM quotes WHERE state = 'open' AND expires_at <= ? ORDER BY expires_at, id LIMIT ?`, micros(now), limit)
}

func (db *DB) InsertContract(ctx context.Context, c sales.Contract) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO contracts (id, tenant_id, kind, sku, terms, start_at, end_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.TenantID, string(c.Kind), c.SKU, mustJSON(c.Terms), micros(c.Start), nullMicros(c.End), micros(c.CreatedAt))
		return err
	})
}

const contractCols = `id, tenant_id, kind, sku, terms, start_at, end_at, created_at`

func scanContract(r scanner) (sales.Contract, error) {
	var c sales.Contract
	var terms string
	var st, cr int64
	var end sql.NullInt64
	if err := r.Scan(&c.ID, &c.TenantID, &c.Kind, &c.SKU, &terms, &st, &end, &cr); err != nil {
		return c, err
	}
	c.Start, c.CreatedAt = fromMicros(st), fromMicros(cr)
	if end.Valid {
		t := fromMicros(end.Int64)
		c.End = &t
	}
	return c, json.Unmarshal([]byte(terms), &c.Terms)
}

func (db *DB) Contract(ctx context.Context, id string) (sales.Contract, error) {
	c, err := scanContract(db.queryRow(ctx, `SELECT `+contractCols+` FROM contracts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, neocloud.NotFound("contract", id)
	}
	return c, db.translate(err)
}

func (db *DB) PutStandingContract(ctx context.Context, c sales.Contract) (sales.Contract, error) {
	err := db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO contracts (id, tenant_id, kind, sku, terms, start_at, end_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			c.ID, c.TenantID, string(c.Kind), c.SKU, mustJSON(c.Terms), micros(c.Start), nullMicros(c.End), micros(c.CreatedAt))
		return err
	})
	if err != nil {
		return c, err
	}
	return db.StandingContract(ctx, c.TenantID, c.Kind, c.SKU)
}

func (db *DB) StandingContract(ctx context.Context, tenantID string, kind sales.Class, sku string) (sales.Contract, error) {
	c, err := scanContract(db.queryRow(ctx, `SELECT `+contractCols+` FROM contracts WHERE tenant_id = ? AND kind = ? AND sku = ?`, tenantID, string(kind), sku))
	if errors.Is(err, sql.ErrNoRows) {
		return c, neocloud.NotFound("contract", string(kind))
	}
	return c, db.translate(err)
}

func (db *DB) Contracts(ctx context.Context, tenantID string, pg neocloud.Page) ([]sales.Contract, error) {
	q, args := `SELECT `+contractCols+` FROM contracts WHERE id > ?`, []any{pg.After()}
	if tenantID != "" {
		q += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	return collect(db, ctx, scanContract, q+` ORDER BY id LIMIT ?`, append(args, limitOf(pg))...)
}

func (db *DB) InsertReservation(ctx context.Context, r sales.Reservation) error {
	return db.write(ctx, func(ctx context.Context) error {
		var quote any
		if r.QuoteID != "" {
			quote = r.QuoteID
		}
		_, err := db.exec(ctx, `INSERT INTO reservations (id, tenant_id, contract_id, quote_id, site_id, sku, class, state, start_at, end_at, due_at, body, version, created_at, updated_at, gpus)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.ID, r.TenantID, r.ContractID, quote, r.Shape.Site, r.Shape.SKU, string(r.Shape.Class), string(r.State),
			micros(r.Shape.Start), endMicros(r.Shape.End), micros(r.DueAt), mustJSON(r), r.Version, micros(r.CreatedAt), micros(r.UpdatedAt), r.Shape.GPUs)
		if err != nil {
			if neocloud.ErrorKind(err) == neocloud.KindConflict && r.QuoteID != "" {
				return neocloud.Conflict("used", "quote %s has already been reserved", r.QuoteID)
			}
			return err
		}
		return db.insertReservationNodes(ctx, r)
	})
}

// insertReservationNodes writes a new reservation's nodes, 300 rows to a
// statement.
func (db *DB) insertReservationNodes(ctx context.Context, r sales.Reservation) error {
	for lo := 0; lo < len(r.Nodes); lo += 300 {
		chunk := r.Nodes[lo:min(len(r.Nodes), lo+300)]
		args := make([]any, 0, 3*len(chunk))
		for _, n := range chunk {
			args = append(args, r.ID, n.NodeID, mustJSON(nonNil(n.GPUs)))
		}
		if _, err := db.exec(ctx, `INSERT INTO reservation_nodes (reservation_id, node_id, gpus) VALUES (?, ?, ?)`+strings.Repeat(", (?, ?, ?)", len(chunk)-1), args...); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) putReservationNodes(ctx context.Context, r sales.Reservation) error {
	have, err := collect(db, ctx, func(sc scanner) (string, error) {
		var id, gpus string
		err := sc.Scan(&id, &gpus)
		return id + " " + gpus, err
	}, `SELECT node_id, gpus FROM reservation_nodes WHERE reservation_id = ? ORDER BY node_id`, r.ID)
	if err != nil {
		return err
	}
	want := make([]string, len(r.Nodes))
	for i, n := range r.Nodes {
		want[i] = n.NodeID + " " + mustJSON(nonNil(n.GPUs))
	}
	slices.Sort(want)
	if slices.Equal(have, want) {
		return nil
	}
	if _, err := db.exec(ctx, `DELETE FROM reservation_nodes WHERE reservation_id = ?`, r.ID); err != nil {
		return err
	}
	return db.insertReservationNodes(ctx, r)
}

func (db *DB) UpdateReservation(ctx context.Context, r sales.Reservation) error {
	return db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `UPDATE reservations SET state = ?, end_at = ?, due_at = ?, body = ?, version = ?, updated_at = ?, gpus = ? WHERE id = ? AND version = ?`,
			string(r.State), endMicros(r.Shape.End), micros(r.DueAt), mustJSON(r), r.Version, micros(r.UpdatedAt), r.Shape.GPUs, r.ID, r.Version-1)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return neocloud.Conflict("changed", "reservation %s changed meanwhile; retry", r.ID)
		}
		return db.putReservationNodes(ctx, r)
	})
}

func (db *DB) ReservationVersion(ctx context.Context, id string) (int64, error) {
	var v int64
	err := db.queryRow(ctx, `SELECT version FROM reservations WHERE id = ?`, id).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, neocloud.NotFound("reservation", id)
	}
	return v, db.translate(err)
}

func (db *DB) Reservation(ctx context.Context, id string) (sales.Reservation, error) {
	r, err := scanBody[sales.Reservation](db.queryRow(ctx, `SELECT body FROM reservations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, neocloud.NotFound("reservation", id)
	}
	return r, db.translate(err)
}

func (db *DB) Reservations(ctx context.Context, f sales.ReservationFilter, pg neocloud.Page) ([]sales.Reservation, error) {
	var where []string
	args := []any{pg.After()}
	where = append(where, "id > ?")
	if f.TenantID != "" {
		where, args = append(where, "tenant_id = ?"), append(args, f.TenantID)
	}
	if f.State != "" {
		where, args = append(where, "state = ?"), append(args, string(f.State))
	}
	if f.Class != "" {
		where, args = append(where, "class = ?"), append(args, string(f.Class))
	}
	return collect(db, ctx, scanBody[sales.Reservation], `SELECT body FROM reservations WHERE `+strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, append(args, limitOf(pg))...)
}

func (db *DB) LiveReservations(ctx context.Context, siteID, sku string) ([]sales.Reservation, error) {
	return collect(db, ctx, scanBody[sales.Reservation], `SELECT body FROM reservations WHERE site_id = ? AND sku = ? AND state IN ('pending','scheduled','active','ending') ORDER BY id`, siteID, sku)
}

func (db *DB) DueReservations(ctx context.Context, now time.Time, limit int) ([]sales.Reservation, error) {
	return collect(db, ctx, scanBody[sales.Reservation], `SELECT body FROM reservations WHERE due_at <= ? AND state IN ('scheduled','active') ORDER BY due_at, id LIMIT ?`, micros(now), limit)
}

func (db *DB) InsertAllocation(ctx context.Context, a sales.Allocation) error {
	return db.write(ctx, func(ctx context.Context) error {
		if _, err := db.exec(ctx, `INSERT INTO allocations (id, reservation_id, tenant_id, node_id, gpus, state, body, due_at, version, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.ID, a.ReservationID, a.TenantID, a.NodeID, mustJSON(a.GPUs), string(a.State), mustJSON(a),
			micros(a.DueAt), a.Version, micros(a.CreatedAt), micros(a.UpdatedAt)); err != nil {
			return err
		}
		if len(a.GPUs) == 0 {
			return nil
		}
		args := make([]any, 0, 3*len(a.GPUs))
		for _, g := range a.GPUs {
			args = append(args, a.ID, a.NodeID, g)
		}
		_, err := db.exec(ctx, `INSERT INTO allocation_gpus (allocation_id, node_id, idx, live) VALUES (?, ?, ?, TRUE)`+strings.Repeat(", (?, ?, ?, TRUE)", len(a.GPUs)-1), args...)
		if neocloud.ErrorKind(err) == neocloud.KindConflict {
			return neocloud.Conflict("allocated", "a GPU of node %s is already in a live allocation", a.Hostname)
		}
		return err
	})
}

func (db *DB) UpdateAllocation(ctx context.Context, a sales.Allocation) error {
	return db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `UPDATE allocations SET state = ?, body = ?, due_at = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?`,
			string(a.State), mustJSON(a), micros(a.DueAt), a.Version, micros(a.UpdatedAt), a.ID, a.Version-1)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return neocloud.Conflict("changed", "allocation %s changed meanwhile; retry", a.ID)
		}
		if a.State == sales.AllocationEnded {
			_, err = db.exec(ctx, `UPDATE allocation_gpus SET live = FALSE WHERE allocation_id = ?`, a.ID)
		}
		return err
	})
}

func (db *DB) Allocations(ctx context.Context, reservationID string) ([]sales.Allocation, error) {
	return collect(db, ctx, scanBody[sales.Allocation], `SELECT body FROM allocations WHERE reservation_id = ? ORDER BY id`, reservationID)
}

func (db *DB) DueAllocations(ctx context.Context, now time.Time, limit int) ([]sales.Allocation, error) {
	return collect(db, ctx, scanBody[sales.Allocation], `SELECT body FROM allocations WHERE due_at <= ? AND state IN ('bound','provisioning','releasing') ORDER BY due_at, id LIMIT ?`, micros(now), limit)
}

func (db *DB) LiveAllocationNodes(ctx context.Context, nodeIDs []string) (map[string]string, error) {
	out := map[string]string{}
	for start := 0; start < len(nodeIDs); start += 500 {
		chunk := nodeIDs[start:min(len(nodeIDs), start+500)]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		held, err := collect(db, ctx, func(r scanner) ([2]string, error) {
			var nr [2]string
			return nr, r.Scan(&nr[0], &nr[1])
		}, `SELECT node_id, reservation_id FROM allocations WHERE state <> 'ended' AND node_id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		for _, nr := range held {
			out[nr[0]] = "allocated to reservation " + nr[1]
		}
	}
	return out, nil
}

func (db *DB) BumpCalendar(ctx context.Context, siteID, sku string) (int64, error) {
	var v int64
	err := db.write(ctx, func(ctx context.Context) error {
		return db.translate(db.queryRow(ctx, `INSERT INTO calendar_versions (site_id, sku, version) VALUES (?, ?, 1)
			ON CONFLICT (site_id, sku) DO UPDATE SET version = calendar_versions.version + 1 RETURNING version`, siteID, sku).Scan(&v))
	})
	return v, err
}

func (db *DB) AppendEvent(ctx context.Context, e sales.Event) (sales.Event, error) {
	err := db.write(ctx, func(ctx context.Context) error {
		if err := db.queryRow(ctx, `UPDATE event_head SET seq = seq + 1 WHERE id = 1 RETURNING seq`).Scan(&e.Seq); err != nil {
			return db.translate(err)
		}
		var tenant any
		if e.TenantID != "" {
			tenant = e.TenantID
		}
		_, err := db.exec(ctx, `INSERT INTO events (seq, id, tenant_id, kind, subject, data, at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			e.Seq, e.ID, tenant, e.Kind, e.Subject, mustJSON(e.Data), micros(e.At))
		return err
	})
	return e, err
}

func (db *DB) Events(ctx context.Context, tenantID string, after int64, limit int) ([]sales.Event, error) {
	q, args := `SELECT seq, id, COALESCE(tenant_id, ''), kind, subject, data, at FROM events WHERE seq > ?`, []any{after}
	if tenantID != "" {
		q += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	return collect(db, ctx, scanEvent, q+` ORDER BY seq LIMIT ?`, append(args, limit)...)
}

// RecentEvents returns the newest events, newest first; with kinds, only
// events of those kinds.
func (db *DB) RecentEvents(ctx context.Context, limit int, kinds ...string) ([]sales.Event, error) {
	q, args := `SELECT seq, id, COALESCE(tenant_id, ''), kind, subject, data, at FROM events`, []any{}
	if len(kinds) > 0 {
		q += ` WHERE kind IN (?` + strings.Repeat(", ?", len(kinds)-1) + `)`
		for _, k := range kinds {
			args = append(args, k)
		}
	}
	return collect(db, ctx, scanEvent, q+` ORDER BY seq DESC LIMIT ?`, append(args, limit)...)
}

func scanEvent(r scanner) (sales.Event, error) {
	var e sales.Event
	var data string
	var at int64
	if err := r.Scan(&e.Seq, &e.ID, &e.TenantID, &e.Kind, &e.Subject, &data, &at); err != nil {
		return e, err
	}
	e.At = fromMicros(at)
	return e, fromJSON("events.data", data, &e.Data)
}

func (db *DB) LiveGPUs(ctx context.Context, nodeIDs []string) (map[string][]int, error) {
	out := map[string][]int{}
	for start := 0; start < len(nodeIDs); start += 500 {
		chunk := nodeIDs[start:min(len(nodeIDs), start+500)]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := db.query(ctx, `SELECT node_id, idx FROM allocation_gpus WHERE live AND node_id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`) ORDER BY node_id, idx`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var n string
			var g int
			if err := rows.Scan(&n, &g); err != nil {
				rows.Close()
				return nil, err
			}
			out[n] = append(out[n], g)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, db.translate(err)
		}
	}
	return out, nil
}

func (db *DB) ContractReservations(ctx context.Context, contractID string) ([]sales.Reservation, error) {
	return collect(db, ctx, scanBody[sales.Reservation], `SELECT body FROM reservations WHERE contract_id = ? ORDER BY start_at, id`, contractID)
}

func (db *DB) InsertMaintenance(ctx context.Context, m sales.Maintenance) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO maintenance (id, site_id, state, start_at, end_at, due_at, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			m.ID, m.Site, m.State, micros(m.Start), micros(m.End), micros(m.DueAt), mustJSON(m), micros(m.CreatedAt))
		return err
	})
}

func (db *DB) UpdateMaintenance(ctx context.Context, m sales.Maintenance) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `UPDATE maintenance SET state = ?, due_at = ?, body = ? WHERE id = ?`, m.State, micros(m.DueAt), mustJSON(m), m.ID)
		return err
	})
}

func (db *DB) Maintenance(ctx context.Context, id string) (sales.Maintenance, error) {
	m, err := scanBody[sales.Maintenance](db.queryRow(ctx, `SELECT body FROM maintenance WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, neocloud.NotFound("maintenance", id)
	}
	return m, db.translate(err)
}

func (db *DB) Maintenances(ctx context.Context, siteID string) ([]sales.Maintenance, error) {
	if siteID == "" {
		return collect(db, ctx, scanBody[sales.Maintenance], `SELECT body FROM maintenance ORDER BY id DESC`)
	}
	return collect(db, ctx, scanBody[sales.Maintenance], `SELECT body FROM maintenance WHERE site_id = ? ORDER BY id DESC`, siteID)
}

func (db *DB) DueMaintenance(ctx context.Context, now time.Time) ([]sales.Maintenance, error) {
	return collect(db, ctx, scanBody[sales.Maintenance], `SELECT body FROM maintenance WHERE due_at <= ? AND state IN ('scheduled','active') ORDER BY due_at, id`, micros(now))
}

func (db *DB) Allocation(ctx context.Context, id string) (sales.Allocation, error) {
	a, err := scanBody[sales.Allocation](db.queryRow(ctx, `SELECT body FROM allocations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, neocloud.NotFound("allocation", id)
	}
	return a, db.translate(err)
}

func (db *DB) AllocationsSettled(ctx context.Context, reservationID string) (live, unready bool, err error) {
	err = db.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM allocations WHERE reservation_id = ? AND state <> 'ended'),
		EXISTS (SELECT 1 FROM allocations WHERE reservation_id = ? AND state IN ('bound', 'provisioning', 'releasing'))`, reservationID, reservationID).Scan(&live, &unready)
	return live, unready, db.translate(err)
}

func (db *DB) AllocationStates(ctx context.Context, reservationID string) (map[sales.AllocationState]int, error) {
	rows, err := db.query(ctx, `SELECT state, COUNT(*) FROM allocations WHERE reservation_id = ? GROUP BY state`, reservationID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[sales.AllocationState]int{}
	for rows.Next() {
		var st sales.AllocationState
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, db.translate(rows.Err())
}

func (db *DB) NodeAllocations(ctx context.Context, nodeID string) ([]sales.Allocation, error) {
	return collect(db, ctx, scanBody[sales.Allocation], `SELECT body FROM allocations WHERE node_id = ? AND state <> 'ended' ORDER BY id`, nodeID)
}

func (db *DB) LastNodeAllocation(ctx context.Context, nodeID string) (sales.Allocation, error) {
	as, err := collect(db, ctx, scanBody[sales.Allocation], `SELECT body FROM allocations WHERE node_id = ? ORDER BY id DESC LIMIT 1`, nodeID)
	if err != nil {
		return sales.Allocation{}, err
	}
	if len(as) == 0 {
		return sales.Allocation{}, neocloud.NotFound("allocation of node", nodeID)
	}
	return as[0], nil
}

func (db *DB) OpenMaintenances(ctx context.Context, siteID string) ([]sales.Maintenance, error) {
	return collect(db, ctx, scanBody[sales.Maintenance], `SELECT body FROM maintenance WHERE site_id = ? AND state IN ('scheduled','active') ORDER BY id DESC`, siteID)
}

func (db *DB) InsertBreakFix(ctx context.Context, b sales.BreakFix) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO break_fix (id, node_id, tenant_id, reservation_id, contract_id, kind, state, created_by, created_at, confirmed_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.ID, b.NodeID, b.TenantID, b.ReservationID, b.ContractID, b.Kind, b.State, b.CreatedBy, micros(b.CreatedAt), closedMicros(b.ConfirmedAt), mustJSON(b))
		return err
	})
}

func (db *DB) UpdateBreakFix(ctx context.Context, b sales.BreakFix) error {
	return db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `UPDATE break_fix SET state = ?, confirmed_at = ?, body = ? WHERE id = ? AND state = 'open'`, b.State, closedMicros(b.ConfirmedAt), mustJSON(b), b.ID)
		if err != nil {
			return err
		}
		return db.closedOpen(ctx, res, "break_fix", "break-fix request", b.ID)
	})
}

// scanBreakFix reads state and body: the state column is the truth for
// requests stored before their bodies held one.
func scanBreakFix(r scanner) (sales.BreakFix, error) {
	var b sales.BreakFix
	var state, body string
	if err := r.Scan(&state, &body); err != nil {
		return b, err
	}
	err := json.Unmarshal([]byte(body), &b)
	b.State = state
	return b, err
}

func (db *DB) BreakFix(ctx context.Context, id string) (sales.BreakFix, error) {
	bs, err := collect(db, ctx, scanBreakFix, `SELECT state, body FROM break_fix WHERE id = ?`, id)
	if err != nil {
		return sales.BreakFix{}, err
	}
	if len(bs) == 0 {
		return sales.BreakFix{}, neocloud.NotFound("break-fix request", id)
	}
	return bs[0], nil
}

func (db *DB) BreakFixes(ctx context.Context, f sales.BreakFixFilter, pg neocloud.Page) ([]sales.BreakFix, error) {
	where, args := breakFixWhere(f, []string{"id > ?"}, []any{pg.After()})
	return collect(db, ctx, scanBreakFix, `SELECT state, body FROM break_fix WHERE `+strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, append(args, limitOf(pg))...)
}

func (db *DB) CountBreakFixes(ctx context.Context, f sales.BreakFixFilter) (int, error) {
	where, args := breakFixWhere(f, []string{"1 = 1"}, nil)
	var n int
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM break_fix WHERE `+strings.Join(where, " AND "), args...).Scan(&n)
	return n, db.translate(err)
}

// breakFixWhere adds a filter's conditions to where and args.
func breakFixWhere(f sales.BreakFixFilter, where []string, args []any) ([]string, []any) {
	for _, c := range []struct{ col, v string }{{"tenant_id", f.TenantID}, {"node_id", f.NodeID}, {"reservation_id", f.ReservationID}, {"kind", f.Kind}, {"state", f.State}} {
		if c.v != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.v)
		}
	}
	return where, args
}

func (db *DB) CountBreakFix(ctx context.Context, contractID, kind string, since time.Time) (int, error) {
	var n int
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM break_fix WHERE contract_id = ? AND kind = ? AND created_at >= ? AND tenant_id <> ''
		AND created_by IN (SELECT id FROM tokens WHERE tenant_id IS NOT NULL AND tenant_id <> '')`, contractID, kind, micros(since)).Scan(&n)
	return n, db.translate(err)
}
