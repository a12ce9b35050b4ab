package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/tenant"
	"github.com/neocloud/neocloud/wire"
)

var _ agents.Store = (*DB)(nil)

const joinTokenCols = `id, site_id, hint, max_uses, uses, expires_at, created_by, created_at, revoked_at`

func scanJoinToken(r scanner) (agents.JoinToken, error) {
	var t agents.JoinToken
	var exp, created int64
	var revoked sql.NullInt64
	err := r.Scan(&t.ID, &t.SiteID, &t.Hint, &t.MaxUses, &t.Uses, &exp, &t.CreatedBy, &created, &revoked)
	t.ExpiresAt, t.CreatedAt = fromMicros(exp), fromMicros(created)
	if revoked.Valid {
		at := fromMicros(revoked.Int64)
		t.RevokedAt = &at
	}
	return t, err
}

func (db *DB) InsertJoinToken(ctx context.Context, t agents.JoinToken, hash string) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO join_tokens (id, site_id, hash, hint, max_uses, uses, expires_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)`,
			t.ID, t.SiteID, hash, t.Hint, t.MaxUses, micros(t.ExpiresAt), t.CreatedBy, micros(t.CreatedAt))
		return err
	})
}

func (db *DB) UseJoinToken(ctx context.Context, hash string, now time.Time) (agents.JoinToken, error) {
	var t agents.JoinToken
	err := db.write(ctx, func(ctx context.Context) error {
		var err error
		t, err = scanJoinToken(db.queryRow(ctx, `SELECT `+joinTokenCols+` FROM join_tokens WHERE hash = ?`, hash))
		if errors.Is(err, sql.ErrNoRows) {
			return neocloud.Errorf(neocloud.KindUnauthenticated, "the join token is unknown")
		}
		if err != nil {
			return db.translate(err)
		}
		switch {
		case t.RevokedAt != nil:
			return neocloud.Errorf(neocloud.KindUnauthenticated, "the join token was revoked")
		case !now.Before(t.ExpiresAt):
			return neocloud.Errorf(neocloud.KindUnauthenticated, "the join token expired at %s", t.ExpiresAt.Format(time.RFC3339))
		case t.Uses >= t.MaxUses:
			return neocloud.Errorf(neocloud.KindUnauthenticated, "the join token has been used %d times, its limit", t.Uses)
		}
		res, err := db.exec(ctx, `UPDATE join_tokens SET uses = uses + 1 WHERE id = ? AND uses < max_uses`, t.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return neocloud.Errorf(neocloud.KindUnauthenticated, "the join token is used up")
		}
		t.Uses++
		return nil
	})
	return t, err
}

func (db *DB) JoinTokens(ctx context.Context, siteID string) ([]agents.JoinToken, error) {
	return collect(db, ctx, scanJoinToken, `SELECT `+joinTokenCols+` FROM join_tokens WHERE site_id = ? ORDER BY id`, siteID)
}

func (db *DB) AgentState(ctx context.Context, nodeID string) (agents.State, error) {
	var st agents.State
	var body string
	err := db.queryRow(ctx, `SELECT body FROM agent_state WHERE node_id = ?`, nodeID).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return st, neocloud.NotFound("agent state of node", nodeID)
	}
	if err != nil {
		return st, db.translate(err)
	}
	return st, json.Unmarshal([]byte(body), &st)
}

// stateJSON encodes a node's state with go-json, which writes what
// encoding/json reads back (TestAgentStateRoundTrip) in a third of the
// time: a state is stored at least once a minute per node.
func stateJSON(st agents.State) string {
	b, err := gojson.Marshal(st)
	if err != nil {
		panic("sqlstore: marshal agent state: " + err.Error())
	}
	return string(b)
}

func (db *DB) PutAgentState(ctx context.Context, st agents.State) (bool, error) {
	var newer bool
	err := db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `INSERT INTO agent_state (node_id, seq, seen_at, body) VALUES (?, ?, ?, ?)
			ON CONFLICT (node_id) DO UPDATE SET seq = excluded.seq, seen_at = excluded.seen_at, body = excluded.body WHERE agent_state.seq < excluded.seq`,
			st.NodeID, st.Seq, micros(st.SeenAt), stateJSON(st))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		newer = n == 1
		return nil
	})
	return newer, err
}

func (db *DB) LatestPower(ctx context.Context, since time.Time) (map[string]float64, error) {
	type power struct {
		node string
		w    float64
	}
	out := map[string]float64{}
	if db.Dialect == Postgres {
		ps, err := collect(db, ctx, func(r scanner) (power, error) {
			var p power
			return p, r.Scan(&p.node, &p.w)
		}, `SELECT DISTINCT ON (node_id) node_id, power_w FROM node_samples WHERE at >= ? ORDER BY node_id, at DESC, seq DESC`, micros(since))
		for _, p := range ps {
			out[p.node] = p.w
		}
		return out, err
	}
	// SQLite is open in one server, which has heard every report itself:
	// this reads the stored states (at least a minute apart), decoding
	// only their GPUs' power.
	type gpus struct {
		Heartbeat struct {
			At   time.Time `json:"at"`
			GPUs []struct {
				PowerW float64 `json:"power_w"`
			} `json:"gpus"`
		} `json:"heartbeat"`
	}
	states, err := collect(db, ctx, func(r scanner) (power, error) {
		var p power
		var body string
		if err := r.Scan(&p.node, &body); err != nil {
			return p, err
		}
		var g gpus
		if err := fromJSON("agent_state.body", body, &g); err != nil {
			return p, err
		}
		if g.Heartbeat.At.Before(since) {
			p.node = ""
		}
		for _, x := range g.Heartbeat.GPUs {
			p.w += x.PowerW
		}
		return p, nil
	}, `SELECT node_id, body FROM agent_state`)
	for _, p := range states {
		if p.node != "" {
			out[p.node] = p.w
		}
	}
	return out, err
}

func (db *DB) AgentNodes(ctx context.Context) ([]string, error) {
	return collect(db, ctx, func(r scanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	}, `SELECT node_id FROM tokens WHERE role = 'agent' AND revoked_at IS NULL AND node_id IS NOT NULL ORDER BY node_id`)
}

func (db *DB) NodeCredential(ctx context.Context, nodeID string) (tenant.Token, error) {
	t, err := scanToken(db.queryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE node_id = ? AND role = 'agent' AND revoked_at IS NULL`, nodeID))
	if errors.Is(err, sql.ErrNoRows) {
		return t, neocloud.NotFound("credential of node", nodeID)
	}
	return t, db.translate(err)
}

// The heartbeat path's statements, prepared once on SQLite's writer.
const (
	insertSampleSQL = `INSERT INTO node_samples (node_id, seq, at, energy_j, power_w) VALUES (?, ?, ?, ?, ?) ON CONFLICT (node_id, seq) DO NOTHING`
	upsertMinuteSQL = `INSERT INTO node_minutes (node_id, minute, samples, energy_first_j, energy_last_j, power_sum_w, power_max_w, temp_max_c, util_sum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (node_id, minute) DO UPDATE SET samples = node_minutes.samples + excluded.samples,
			energy_first_j = CASE WHEN excluded.energy_first_j < node_minutes.energy_first_j THEN excluded.energy_first_j ELSE node_minutes.energy_first_j END,
			energy_last_j = CASE WHEN excluded.energy_last_j > node_minutes.energy_last_j THEN excluded.energy_last_j ELSE node_minutes.energy_last_j END,
			power_sum_w = node_minutes.power_sum_w + excluded.power_sum_w,
			power_max_w = CASE WHEN excluded.power_max_w > node_minutes.power_max_w THEN excluded.power_max_w ELSE node_minutes.power_max_w END,
			temp_max_c = CASE WHEN excluded.temp_max_c > node_minutes.temp_max_c THEN excluded.temp_max_c ELSE node_minutes.temp_max_c END,
			util_sum = node_minutes.util_sum + excluded.util_sum`
)

func (db *DB) PutSamples(ctx context.Context, ss []agents.Sample) ([]bool, error) {
	fresh := make([]bool, len(ss))
	err := db.write(ctx, func(ctx context.Context) error {
		if db.Dialect == Postgres {
			return db.putSamplesPG(ctx, ss, fresh)
		}
		return db.tel.putSamples(ctx, db, ss, fresh)
	})
	return fresh, err
}

// putSamplesPG writes a batch in one statement (one round trip): arrays
// unnested, the rows inserted returned. A (node, seq) twice in the batch is
// fresh the first time only.
func (db *DB) putSamplesPG(ctx context.Context, ss []agents.Sample, fresh []bool) error {
	nodes, seqs, ats, energies, powers := make([]string, len(ss)), make([]int64, len(ss)), make([]int64, len(ss)), make([]int64, len(ss)), make([]float64, len(ss))
	for i, s := range ss {
		nodes[i], seqs[i], ats[i], energies[i], powers[i] = s.NodeID, s.Seq, micros(s.At), int64(s.EnergyJ), s.PowerW
	}
	rows, err := db.query(ctx, `INSERT INTO node_samples (node_id, seq, at, energy_j, power_w)
		SELECT * FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::double precision[])
		ON CONFLICT (node_id, seq) DO NOTHING RETURNING node_id, seq`, nodes, seqs, ats, energies, powers)
	if err != nil {
		return err
	}
	defer rows.Close()
	type key struct {
		node string
		seq  int64
	}
	inserted := map[key]bool{}
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.node, &k.seq); err != nil {
			return err
		}
		inserted[k] = true
	}
	if err := rows.Err(); err != nil {
		return db.translate(err)
	}
	for i, s := range ss {
		k := key{s.NodeID, s.Seq}
		fresh[i] = inserted[k]
		delete(inserted, k) // a second copy in the batch is a duplicate
	}
	return nil
}

func (db *DB) Samples(ctx context.Context, nodeID string, from, to int64) ([]agents.Sample, error) {
	if db.Dialect == SQLite {
		return db.nodeSamples(ctx, nodeID, from, to)
	}
	return collect(db, ctx, func(r scanner) (agents.Sample, error) {
		var s agents.Sample
		var at, e int64
		err := r.Scan(&s.NodeID, &s.Seq, &at, &e, &s.PowerW)
		s.At, s.EnergyJ = fromMicros(at), uint64(e)
		return s, err
	}, `SELECT node_id, seq, at, energy_j, power_w FROM node_samples WHERE node_id = ? AND seq BETWEEN ? AND ? ORDER BY seq`, nodeID, from, to)
}

func (db *DB) PutMinutes(ctx context.Context, ms []agents.Minute) error {
	return db.write(ctx, func(ctx context.Context) error {
		if db.Dialect == Postgres {
			// One statement for the batch (each (node, minute) once).
			cols := struct {
				nodes                            []string
				minutes, samples, firsts, lasts  []int64
				powerSums, powerMaxes, tempMaxes []float64
				utilSums                         []float64
			}{}
			for _, m := range ms {
				cols.nodes = append(cols.nodes, m.NodeID)
				cols.minutes = append(cols.minutes, micros(m.Minute))
				cols.samples = append(cols.samples, m.Samples)
				cols.firsts = append(cols.firsts, int64(m.EnergyFirstJ))
				cols.lasts = append(cols.lasts, int64(m.EnergyLastJ))
				cols.powerSums = append(cols.powerSums, m.PowerSumW)
				cols.powerMaxes = append(cols.powerMaxes, m.PowerMaxW)
				cols.tempMaxes = append(cols.tempMaxes, m.TempMaxC)
				cols.utilSums = append(cols.utilSums, m.UtilSum)
			}
			_, err := db.exec(ctx, strings.Replace(upsertMinuteSQL, "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
				"SELECT * FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::double precision[], ?::double precision[], ?::double precision[], ?::double precision[])", 1),
				cols.nodes, cols.minutes, cols.samples, cols.firsts, cols.lasts, cols.powerSums, cols.powerMaxes, cols.tempMaxes, cols.utilSums)
			return err
		}
		return db.tel.putMinutes(ctx, db, ms)
	})
}

func (db *DB) Minutes(ctx context.Context, nodeID string, from, to time.Time) ([]agents.Minute, error) {
	if db.Dialect == SQLite {
		return db.nodeMinutes(ctx, nodeID, from, to)
	}
	return collect(db, ctx, func(r scanner) (agents.Minute, error) {
		var m agents.Minute
		var at, ef, el int64
		err := r.Scan(&m.NodeID, &at, &m.Samples, &ef, &el, &m.PowerSumW, &m.PowerMaxW, &m.TempMaxC, &m.UtilSum)
		m.Minute, m.EnergyFirstJ, m.EnergyLastJ = fromMicros(at), uint64(ef), uint64(el)
		m.Averages()
		return m, err
	}, `SELECT node_id, minute, samples, energy_first_j, energy_last_j, power_sum_w, power_max_w, temp_max_c, util_sum FROM node_minutes WHERE node_id = ? AND minute >= ? AND minute < ? ORDER BY minute`,
		nodeID, micros(from), micros(to))
}

func (db *DB) PutEnergyReadings(ctx context.Context, rs []agents.EnergyReading) error {
	return db.write(ctx, func(ctx context.Context) error {
		for _, r := range rs {
			if _, err := db.exec(ctx, `INSERT INTO energy_readings (node_id, gpu, at, energy_j, reason, allocation_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				r.NodeID, r.GPU, micros(r.At), int64(r.EnergyJ), r.Reason, r.AllocationID); err != nil {
				return err
			}
		}
		return nil
	})
}

func (db *DB) EnergyReadings(ctx context.Context, nodeID string, from, to time.Time) ([]agents.EnergyReading, error) {
	return collect(db, ctx, func(r scanner) (agents.EnergyReading, error) {
		var e agents.EnergyReading
		var at, j int64
		err := r.Scan(&e.NodeID, &e.GPU, &at, &j, &e.Reason, &e.AllocationID)
		e.At, e.EnergyJ = fromMicros(at), uint64(j)
		return e, err
	}, `SELECT node_id, gpu, at, energy_j, reason, allocation_id FROM energy_readings WHERE node_id = ? AND at >= ? AND at < ? ORDER BY at, gpu`, nodeID, micros(from), micros(to))
}

func (db *DB) PurgeTelemetry(ctx context.Context, before time.Time) (int64, error) {
	cut := micros(before)
	if db.Dialect == Postgres {
		return db.execCounted(ctx, []statement{
			{`DELETE FROM node_minutes WHERE minute < ?`, []any{cut}},
			{`DELETE FROM node_samples WHERE at < ?`, []any{cut}},
		})
	}
	// SQLite's tables are read by key alone (no index by time): a node at
	// a time, purgeNodes to a transaction, so that heartbeats' commits go
	// on between them. A node's samples go in sequence order, up to its
	// first one taken at or after before (purgeRuns). What the journal
	// holds is folded first, so that it is purged too.
	if err := db.tel.settle(ctx, db); err != nil {
		return 0, err
	}
	ids, err := collect(db, ctx, func(r scanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	}, `SELECT id FROM nodes ORDER BY id`)
	if err != nil {
		return 0, err
	}
	var n int64
	for chunk := range slices.Chunk(ids, purgeNodes) {
		var k int64
		err := db.write(ctx, func(ctx context.Context) error {
			k = 0
			for _, id := range chunk {
				res, err := db.exec(ctx, `DELETE FROM node_minutes WHERE node_id = ? AND minute < ?`, id, cut)
				if err != nil {
					return err
				}
				m, _ := res.RowsAffected()
				s, err := db.purgeRuns(ctx, id, cut)
				if err != nil {
					return err
				}
				k += m + s
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}

// statement is a query and its arguments.
type statement struct {
	sql  string
	args []any
}

// execCounted runs statements in one transaction and says how many rows
// they changed (none when it rolls back).
func (db *DB) execCounted(ctx context.Context, qs []statement) (int64, error) {
	var n int64
	err := db.write(ctx, func(ctx context.Context) error {
		for _, q := range qs {
			res, err := db.exec(ctx, q.sql, q.args...)
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// purgeNodes is how many nodes' old telemetry one transaction of a purge
// on SQLite deletes.
const purgeNodes = 64

func (db *DB) InsertCommand(ctx context.Context, c agents.NodeCommand) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO node_commands (id, node_id, kind, generation, power_w, state, message, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.NodeID, c.Kind, c.Generation, c.PowerW, c.State, c.Message, c.CreatedBy, micros(c.CreatedAt))
		return err
	})
}

func (db *DB) Commands(ctx context.Context, nodeID string, pendingOnly bool) ([]agents.NodeCommand, error) {
	q := `SELECT id, node_id, kind, generation, power_w, state, message, created_by, created_at, done_at FROM node_commands WHERE node_id = ?`
	if pendingOnly {
		q += ` AND state = 'pending'`
	}
	return collect(db, ctx, func(r scanner) (agents.NodeCommand, error) {
		var c agents.NodeCommand
		var created int64
		var done sql.NullInt64
		err := r.Scan(&c.ID, &c.NodeID, &c.Kind, &c.Generation, &c.PowerW, &c.State, &c.Message, &c.CreatedBy, &created, &done)
		c.CreatedAt = fromMicros(created)
		if done.Valid {
			t := fromMicros(done.Int64)
			c.DoneAt = &t
		}
		return c, err
	}, q+` ORDER BY id DESC`, nodeID)
}

func (db *DB) FinishCommand(ctx context.Context, nodeID string, r wire.Result, at time.Time) error {
	switch r.State {
	case "done", "failed", "refused":
	default:
		return neocloud.Invalid("body.results", "a result is done, failed or refused, not %q", r.State)
	}
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `UPDATE node_commands SET state = ?, message = ?, done_at = ? WHERE id = ? AND node_id = ? AND state = 'pending'`,
			r.State, r.Message, micros(at), r.ID, nodeID)
		return err
	})
}

const ticketCols = `id, node_id, state, reasons, gpus, quarantined, command_id, message, opened_at, updated_at, closed_at`

func scanTicket(r scanner) (agents.RepairTicket, error) {
	var t agents.RepairTicket
	var reasons, gpus string
	var opened, updated int64
	var closed sql.NullInt64
	if err := r.Scan(&t.ID, &t.NodeID, &t.State, &reasons, &gpus, &t.Quarantined, &t.CommandID, &t.Message, &opened, &updated, &closed); err != nil {
		return t, err
	}
	t.OpenedAt, t.UpdatedAt = fromMicros(opened), fromMicros(updated)
	if closed.Valid {
		at := fromMicros(closed.Int64)
		t.ClosedAt = &at
	}
	if err := json.Unmarshal([]byte(reasons), &t.Reasons); err != nil {
		return t, err
	}
	return t, json.Unmarshal([]byte(gpus), &t.GPUs)
}

func closedMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return micros(*t)
}

func (db *DB) InsertTicket(ctx context.Context, t agents.RepairTicket) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO repair_tickets (`+ticketCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.NodeID, t.State, mustJSON(t.Reasons), mustJSON(t.GPUs), t.Quarantined, t.CommandID, t.Message, micros(t.OpenedAt), micros(t.UpdatedAt), closedMicros(t.ClosedAt))
		return err
	})
}

func (db *DB) UpdateTicket(ctx context.Context, t agents.RepairTicket) error {
	return db.write(ctx, func(ctx context.Context) error {
		res, err := db.exec(ctx, `UPDATE repair_tickets SET state = ?, reasons = ?, gpus = ?, quarantined = ?, command_id = ?, message = ?, updated_at = ?, closed_at = ? WHERE id = ?`,
			t.State, mustJSON(t.Reasons), mustJSON(t.GPUs), t.Quarantined, t.CommandID, t.Message, micros(t.UpdatedAt), closedMicros(t.ClosedAt), t.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return neocloud.NotFound("repair ticket", t.ID)
		}
		return nil
	})
}

func (db *DB) Tickets(ctx context.Context, nodeID string, openOnly bool) ([]agents.RepairTicket, error) {
	q := `SELECT ` + ticketCols + ` FROM repair_tickets WHERE (? = '' OR node_id = ?)`
	if openOnly {
		q += ` AND state <> 'closed'`
	}
	return collect(db, ctx, scanTicket, q+` ORDER BY opened_at DESC, id DESC`, nodeID, nodeID)
}

func (db *DB) TicketPage(ctx context.Context, f agents.TicketFilter, pg neocloud.Page) ([]agents.RepairTicket, error) {
	where, args := ticketWhere(f)
	if after := pg.After(); after != "" {
		where, args = append(where, "id < ?"), append(args, after)
	}
	return collect(db, ctx, scanTicket, `SELECT `+ticketCols+` FROM repair_tickets WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, append(args, limitOf(pg))...)
}

func (db *DB) CountTickets(ctx context.Context, f agents.TicketFilter) (int, error) {
	where, args := ticketWhere(f)
	var n int
	err := db.queryRow(ctx, `SELECT COUNT(*) FROM repair_tickets WHERE `+strings.Join(where, " AND "), args...).Scan(&n)
	return n, db.translate(err)
}

// ticketWhere is a ticket filter's conditions.
func ticketWhere(f agents.TicketFilter) ([]string, []any) {
	where, args := []string{"1 = 1"}, []any{}
	if f.NodeID != "" {
		where, args = append(where, "node_id = ?"), append(args, f.NodeID)
	}
	if f.Closed != nil {
		op := "<>"
		if *f.Closed {
			op = "="
		}
		where = append(where, "state "+op+" 'closed'")
	}
	return where, args
}

func (db *DB) InsertSanitizeRecord(ctx context.Context, r agents.SanitizeRecord) error {
	return db.write(ctx, func(ctx context.Context) error {
		_, err := db.exec(ctx, `INSERT INTO sanitize_records (id, node_id, ticket_id, command_id, result, steps, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.NodeID, r.TicketID, r.CommandID, r.Result, mustJSON(r.Steps), micros(r.StartedAt), micros(r.FinishedAt))
		return err
	})
}

func (db *DB) SanitizeRecords(ctx context.Context, nodeID string) ([]agents.SanitizeRecord, error) {
	return collect(db, ctx, func(row scanner) (agents.SanitizeRecord, error) {
		var r agents.SanitizeRecord
		var steps string
		var started, finished int64
		if err := row.Scan(&r.ID, &r.NodeID, &r.TicketID, &r.CommandID, &r.Result, &steps, &started, &finished); err != nil {
			return r, err
		}
		r.StartedAt, r.FinishedAt = fromMicros(started), fromMicros(finished)
		return r, json.Unmarshal([]byte(steps), &r.Steps)
	}, `SELECT id, node_id, ticket_id, command_id, result, steps, started_at, finished_at FROM sanitize_records WHERE node_id = ? ORDER BY finished_at DESC, id DESC`, nodeID)
}

func (db *DB) PutSeen(ctx context.Context, seen map[string]time.Time) error {
	return db.write(ctx, func(ctx context.Context) error {
		if db.Dialect == Postgres {
			ids, ats := make([]string, 0, len(seen)), make([]int64, 0, len(seen))
			for id, at := range seen {
				ids, ats = append(ids, id), append(ats, micros(at))
			}
			_, err := db.exec(ctx, `INSERT INTO node_seen (node_id, seen_at) SELECT * FROM unnest(?::text[], ?::bigint[])
				ON CONFLICT (node_id) DO UPDATE SET seen_at = excluded.seen_at WHERE node_seen.seen_at < excluded.seen_at`, ids, ats)
			return err
		}
		for id, at := range seen {
			if _, err := db.exec(ctx, `INSERT INTO node_seen (node_id, seen_at) VALUES (?, ?)
				ON CONFLICT (node_id) DO UPDATE SET seen_at = excluded.seen_at WHERE node_seen.seen_at < excluded.seen_at`, id, micros(at)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (db *DB) Seen(ctx context.Context) (map[string]time.Time, error) {
	rows, err := db.query(ctx, `SELECT node_id, seen_at FROM node_seen`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id string
		var at int64
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out[id] = fromMicros(at)
	}
	return out, db.translate(rows.Err())
}

func (db *DB) TakeLease(ctx context.Context, name, holder string, now, until time.Time) (int64, bool, error) {
	var epoch int64
	var got bool
	err := db.write(ctx, func(ctx context.Context) error {
		if _, err := db.exec(ctx, `INSERT INTO leases (name, holder, until, epoch) VALUES (?, ?, ?, 1) ON CONFLICT (name) DO NOTHING`, name, holder, micros(until)); err != nil {
			return err
		}
		rows, err := db.query(ctx, `UPDATE leases SET epoch = CASE WHEN holder = ? THEN epoch ELSE epoch + 1 END, holder = ?, until = ?
			WHERE name = ? AND (holder = ? OR until < ?) RETURNING epoch`, holder, holder, micros(until), name, holder, micros(now))
		if err != nil {
			return err
		}
		defer rows.Close()
		if rows.Next() {
			got = true
			if err := rows.Scan(&epoch); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	return epoch, got, err
}

func (db *DB) HoldsLease(ctx context.Context, name, holder string, epoch int64, now time.Time) (bool, error) {
	var held bool
	err := db.write(ctx, func(ctx context.Context) error {
		q := `SELECT 1 FROM leases WHERE name = ? AND holder = ? AND epoch = ? AND until >= ?`
		if db.Dialect == Postgres {
			q += ` FOR UPDATE` // a takeover waits for this transaction, or this one sees it
		}
		var one int
		err := db.queryRow(ctx, q, name, holder, epoch, micros(now)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		held = err == nil
		return db.translate(err)
	})
	return held, err
}

func (db *DB) PutIncidents(ctx context.Context, incs []agents.Incident) error {
	return db.write(ctx, func(ctx context.Context) error {
		for _, inc := range incs {
			if _, err := db.exec(ctx, `INSERT INTO incidents (id, closed, opened_at, body) VALUES (?, ?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET closed = excluded.closed, body = excluded.body`, inc.ID, inc.ClosedAt != nil, micros(inc.OpenedAt), mustJSON(inc)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (db *DB) Incidents(ctx context.Context, openOnly bool) ([]agents.Incident, error) {
	q := `SELECT body FROM incidents`
	if openOnly {
		q += ` WHERE closed = FALSE`
	}
	return collect(db, ctx, scanBody[agents.Incident], q+` ORDER BY closed, opened_at DESC, id DESC`)
}

// ErrLeaseLost is a write fenced by a lease this server no longer holds at
// the epoch it took: another server took it over.
var ErrLeaseLost = errors.New("this server no longer holds the lease: another took it over")

// Lease is one server's hold on a named lease (TakeLease, HoldsLease) for
// background work that one server at a time does: Take takes or renews it;
// Fence, in the transaction of a write, fails unless it is still held at
// the epoch taken, and makes a takeover wait for that transaction.
type Lease struct {
	db     *DB
	name   string
	holder string
	ttl    time.Duration
	epoch  atomic.Int64
}

// Lease returns holder's hold on the lease name, taken for ttl at a time.
func (db *DB) Lease(name, holder string, ttl time.Duration) *Lease {
	return &Lease{db: db, name: name, holder: holder, ttl: ttl}
}

// Take takes or renews the lease, reporting whether it is held.
func (l *Lease) Take(ctx context.Context) (bool, error) {
	now := time.Now().UTC()
	epoch, held, err := l.db.TakeLease(ctx, l.name, l.holder, now, now.Add(l.ttl))
	if held {
		l.epoch.Store(epoch)
	}
	return held, err
}

// Fence fails with ErrLeaseLost unless the lease is held at the epoch
// Take last took.
func (l *Lease) Fence(ctx context.Context) error {
	held, err := l.db.HoldsLease(ctx, l.name, l.holder, l.epoch.Load(), time.Now().UTC())
	if err == nil && !held {
		return ErrLeaseLost
	}
	return err
}
