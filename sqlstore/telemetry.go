package sqlstore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/neocloud/neocloud/agents"
)

// telemetry is SQLite's heartbeat journal. A group commit appends its
// samples, and then its minute rollups, as one row each of
// telemetry_journal: the end of one table, a page or two. Written as rows
// of tables keyed by node, each heartbeat would dirty a page or more of
// its own in every commit. Later commits fold the journal into
// node_sample_runs and node_minutes a slice at a time, in key order, so
// that a page takes all of a node's rows at once: a node's samples in a
// fold become one run (a row holding them all), its minutes a row each. A
// read of a node's telemetry takes its rows from the journal too
// (nodeSamples, nodeMinutes); a read across nodes, or a purge, folds the
// rest first (settle).
//
// Whether a sample is new is known from memory, without reading the
// tables: per node, its highest sequence number and which of the
// seqWindowLen below it have been stored since the store was opened. A node
// not seen since then has all its samples in node_sample_runs (the journal
// is folded whole on open), whose key is a run's highest: one indexed read
// tells the node's.
//
// What is kept here changes within the writer's transactions (all of them
// on its one connection, one at a time). When one rolls back, memory may
// no longer match the store, so it is marked stale: the next use folds the
// whole journal and starts again from the tables. A commit's outcome is
// known only after it has given the connection back: a transaction that
// begins then waits for it before using memory.
type telemetry struct {
	mu      sync.Mutex
	windows map[string]*seqWindow
	pending int       // samples and minutes journaled and not in a fold plan
	since   time.Time // when the first of them was journaled
	plan    *foldPlan
	// spare is the last plan folded: the next is read into its slices
	// (a plan holds a fold's worth of samples, megabytes).
	spare *foldPlan
	stale bool
	// open is the transaction that last used memory, until its outcome is
	// known (nil then); ended is signalled when it is.
	open  any
	ended sync.Cond
	// building says a plan is being read in the background; gen counts
	// folds of the whole journal, which make such a plan moot.
	building bool
	gen      int
	// reads counts the plans read (or being read) so far; folded is the
	// count, as of its read, of the last plan folded whole. A plan read
	// after a moment holds every row journaled before it.
	reads, folded int
	// When a fold starts, how much a commit folds and how much a settle
	// folds a transaction (the defaults below; tests make them small).
	foldAt      int
	foldAge     time.Duration
	foldMin     int
	foldPer     int
	settleSlice int
	// buf is where a commit's journal row is encoded (the statement
	// copies it).
	buf []byte
}

func newTelemetry() *telemetry {
	t := &telemetry{stale: true, foldAt: foldAt, foldAge: foldAge, foldMin: foldMin, foldPer: foldPer, settleSlice: settleSlice}
	t.ended.L = &t.mu
	return t
}

const (
	// A fold starts once the oldest sample (or minute) waiting has waited
	// foldAge, or once foldAt wait: a minute's reports at any rate a site
	// sends (25,000 nodes every 10 s send 150,000), and a bound on the
	// plan's memory (64 MiB of samples) past that. The more of a node's
	// samples a fold takes at once, the fewer of its pages each sample
	// dirties: folding every 262,144 at full load (about every 20 s) cost
	// 4% more CPU a heartbeat.
	foldAt  = 1 << 20
	foldAge = time.Minute
	// Each commit folds at least foldMin samples, and foldPer for each it
	// journals, so that a fold ends well before the next is due.
	foldMin = 256
	foldPer = 4
	// A settle folds settleSlice samples a transaction (tens of
	// milliseconds).
	settleSlice = 16384
)

// foldPlan is a fold under way: the journal's rows up to through, decoded,
// sorted by key, and how far they have been written.
type foldPlan struct {
	read    int // its number among the plans read
	through int64
	samples []agents.Sample // by node, then sequence number
	minutes []agents.Minute // by node, then minute; one per node-minute
	si, mi  int             // next to write
}

// seqWindowLen is how many sequence numbers below its highest a node's
// window tracks.
const seqWindowLen = 256

// seqWindow says which of a node's sequence numbers are stored: all up to
// hi are known from hi-seqWindowLen+1 and from base on (bit d of bits is
// hi-d); those below either are read from the store.
type seqWindow struct {
	hi, base int64
	bits     [seqWindowLen / 64]uint64
}

// has says whether seq is stored, and whether the window knows.
func (w *seqWindow) has(seq int64) (stored, known bool) {
	if seq > w.hi {
		return false, true
	}
	d := w.hi - seq
	if seq < w.base || d >= seqWindowLen {
		return false, false
	}
	return w.bits[d/64]>>(d%64)&1 == 1, true
}

// add records seq as stored.
func (w *seqWindow) add(seq int64) {
	if seq > w.hi {
		w.shift(seq - w.hi)
		w.hi = seq
	}
	if d := w.hi - seq; seq >= w.base && d < seqWindowLen {
		w.bits[d/64] |= 1 << (d % 64)
	}
}

// shift moves every bit k places up (hi grows by k).
func (w *seqWindow) shift(k int64) {
	if k >= seqWindowLen {
		w.bits = [seqWindowLen / 64]uint64{}
		return
	}
	words, b := int(k/64), uint(k%64)
	for i := len(w.bits) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.bits[j] << b
			if b > 0 && j > 0 {
				v |= w.bits[j-1] >> (64 - b)
			}
		}
		w.bits[i] = v
	}
}

const insertJournalSQL = `INSERT INTO telemetry_journal (kind, data) VALUES (?, ?)`

// begin joins ctx's transaction, once the last one to use memory is known
// to have committed or not: a rollback marks memory stale; stale memory is
// made good (the whole journal folded) first. t.mu is held.
func (t *telemetry) begin(ctx context.Context, db *DB) error {
	tx := db.TxID(ctx)
	for t.open != nil && t.open != tx {
		t.ended.Wait()
	}
	if t.open == nil && tx != nil {
		t.open = tx
		db.OnEnd(ctx, func(committed bool) {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.open = nil
			t.stale = t.stale || !committed
			t.ended.Broadcast()
		})
	}
	if !t.stale {
		return nil
	}
	t.plan = nil
	if err := t.foldAll(ctx, db); err != nil {
		return err
	}
	t.windows = map[string]*seqWindow{}
	t.stale = false
	return nil
}

// putSamples journals the new ones of ss (fresh says which) and folds a
// slice of the journal, in ctx's transaction.
func (t *telemetry) putSamples(ctx context.Context, db *DB, ss []agents.Sample, fresh []bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.begin(ctx, db); err != nil {
		return err
	}
	buf := t.buf[:0]
	n := 0
	for i, s := range ss {
		w := t.windows[s.NodeID]
		if w == nil {
			var hi int64
			if err := db.queryRow(ctx, `SELECT COALESCE(MAX(last_seq), 0) FROM node_sample_runs WHERE node_id = ?`, s.NodeID).Scan(&hi); err != nil {
				return db.translate(err)
			}
			w = &seqWindow{hi: hi, base: hi + 1}
			t.windows[s.NodeID] = w
		}
		stored, known := w.has(s.Seq)
		if !known {
			// An old report resent late: the tables say, once the journal
			// is folded into them (and this batch, which is not yet).
			// Scanning the journal instead would take the writer tens of
			// milliseconds for each such sample (a node's reads do that,
			// on the read pool); after a fold, the next ones cost an
			// indexed read each.
			if err := t.foldAll(ctx, db); err != nil {
				return err
			}
			old, err := db.nodeSamples(ctx, s.NodeID, s.Seq, s.Seq)
			if err != nil {
				return err
			}
			stored = len(old) > 0
			for j := range i { // nor yet is what this batch stores
				stored = stored || fresh[j] && ss[j].NodeID == s.NodeID && ss[j].Seq == s.Seq
			}
		}
		if stored {
			continue
		}
		fresh[i] = true
		w.add(s.Seq)
		buf = appendSample(buf, s)
		n++
	}
	if n > 0 {
		t.buf = buf
		if _, err := db.exec(ctx, insertJournalSQL, "samples", buf); err != nil {
			return err
		}
		t.note(n)
	}
	return t.step(ctx, db, t.foldMin+t.foldPer*len(ss))
}

// putMinutes journals minute rollups, in ctx's transaction.
func (t *telemetry) putMinutes(ctx context.Context, db *DB, ms []agents.Minute) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.begin(ctx, db); err != nil {
		return err
	}
	buf := t.buf[:0]
	for _, m := range ms {
		buf = appendMinute(buf, m)
	}
	t.buf = buf
	if _, err := db.exec(ctx, insertJournalSQL, "minutes", buf); err != nil {
		return err
	}
	t.note(len(ms))
	return nil
}

func (t *telemetry) note(n int) {
	if t.pending == 0 {
		t.since = time.Now()
	}
	t.pending += n
}

// idle says whether nothing waits to be folded.
func (t *telemetry) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.plan == nil && t.pending == 0 && !t.stale && !t.building
}

// settle folds the journal, so that node_sample_runs and node_minutes
// hold every report committed before it was called.
//
// Outside a transaction it reads the plan on the read pool, as a
// commit's fold does, and writes it settleSlice samples a transaction:
// heartbeats commit between the slices instead of waiting for the whole
// journal (a minute's reports, hundreds of milliseconds at a site's
// cadence). Within one it folds the whole journal there.
func (t *telemetry) settle(ctx context.Context, db *DB) error {
	if t == nil || t.idle() {
		return nil
	}
	if txOf(ctx) != nil {
		return db.write(ctx, func(ctx context.Context) error {
			t.mu.Lock()
			defer t.mu.Unlock()
			if err := t.begin(ctx, db); err != nil {
				return err
			}
			return t.foldAll(ctx, db)
		})
	}
	// Done once a plan read after this point has been folded whole, in a
	// transaction that committed: as seen from the writer.
	t.mu.Lock()
	since := t.reads
	t.mu.Unlock()
	for {
		t.mu.Lock()
		var read func()
		if t.plan == nil && !t.building && !t.stale && t.folded <= since {
			read = t.startBuild(db)
		}
		t.mu.Unlock()
		if read != nil {
			read()
		}
		done := false
		err := db.write(ctx, func(ctx context.Context) error {
			t.mu.Lock()
			defer t.mu.Unlock()
			if err := t.begin(ctx, db); err != nil {
				return err
			}
			if t.plan == nil {
				if t.folded > since {
					done = true
					return nil
				}
				// A plan read meanwhile was folded already, or one being
				// read elsewhere is not here yet: read it here (a plan
				// being read elsewhere is moot).
				t.gen++
				if err := t.makePlan(ctx, db); err != nil {
					return err
				}
				if t.plan == nil {
					done = true
					return nil
				}
			}
			return t.fold(ctx, db, t.settleSlice)
		})
		if err != nil || done {
			return err
		}
	}
}

// step folds about budget samples of the plan, or has a plan read when a
// fold is due: in the background, on the read pool, once this transaction
// has committed (reading and sorting a large journal takes a while, and
// commits go on meanwhile; the plan then holds every row journaled so
// far).
func (t *telemetry) step(ctx context.Context, db *DB, budget int) error {
	if t.plan != nil {
		return t.fold(ctx, db, budget)
	}
	if t.building || t.pending == 0 || (t.pending < t.foldAt && time.Since(t.since) < t.foldAge) {
		return nil
	}
	gen := t.gen
	db.AfterCommit(ctx, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.gen != gen || t.plan != nil || t.building {
			return
		}
		read := t.startBuild(db)
		go read()
	})
	return nil
}

// startBuild marks a plan as being read and returns the read (build),
// to run outside t.mu, which is held here.
func (t *telemetry) startBuild(db *DB) func() {
	t.building = true
	t.pending, t.since = 0, time.Time{}
	spare := t.spare
	t.spare = nil
	t.reads++
	gen, read := t.gen, t.reads
	return func() { t.build(db, gen, read, spare) }
}

// build reads a plan outside the writer and hands it to the next commit.
func (t *telemetry) build(db *DB, gen, read int, spare *foldPlan) {
	p, err := readPlan(context.Background(), db, spare)
	if p != nil {
		p.read = read
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.building = false
	if t.gen != gen || t.plan != nil {
		return // the whole journal was folded meanwhile
	}
	if err != nil {
		t.note(1) // tried again, a fold age later
		return
	}
	t.plan = p
}

// foldAll folds the whole journal.
func (t *telemetry) foldAll(ctx context.Context, db *DB) error {
	t.gen++
	for {
		if t.plan == nil {
			if err := t.makePlan(ctx, db); err != nil {
				return err
			}
			if t.plan == nil {
				break
			}
		}
		if err := t.fold(ctx, db, -1); err != nil {
			return err
		}
	}
	t.pending, t.since = 0, time.Time{}
	return nil
}

// makePlan reads the journal into the plan.
func (t *telemetry) makePlan(ctx context.Context, db *DB) error {
	t.pending, t.since = 0, time.Time{}
	t.reads++
	p, err := readPlan(ctx, db, t.spare)
	if p != nil {
		p.read = t.reads
	}
	t.plan, t.spare = p, nil
	return err
}

// readPlan reads the journal into a plan (nil when it is empty): the rows
// up to the one a fold under way had reached (less the nodes it had
// written), else all of them. In ctx's transaction, or on the read pool.
// The plan takes spare's slices, when there is one.
func readPlan(ctx context.Context, db *DB, spare *foldPlan) (*foldPlan, error) {
	var through int64
	var after string
	resumed := true
	err := db.queryRow(ctx, `SELECT through, node_through FROM telemetry_fold WHERE id = 1`).Scan(&through, &after)
	if errors.Is(err, sql.ErrNoRows) {
		resumed = false
		err = db.queryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM telemetry_journal`).Scan(&through)
	}
	if err != nil {
		return nil, db.translate(err)
	}
	if through == 0 {
		return nil, nil
	}
	rows, err := db.query(ctx, `SELECT kind, data FROM telemetry_journal WHERE id <= ? ORDER BY id`, through)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	p := &foldPlan{through: through}
	if spare != nil {
		p.samples, p.minutes = spare.samples[:0], spare.minutes[:0]
	}
	names := map[string]string{} // one string per node
	minutes := map[nodeMinute]int{}
	for rows.Next() {
		var kind string
		var data sql.RawBytes // decoded before the next row: strings are copied
		if err := rows.Scan(&kind, &data); err != nil {
			return nil, db.translate(err)
		}
		for len(data) > 0 {
			switch kind {
			case "samples":
				var s agents.Sample
				if s, data, err = readSample(data, names); err != nil {
					return nil, err
				}
				if !resumed || s.NodeID > after {
					p.samples = append(p.samples, s)
				}
			default:
				var m agents.Minute
				if m, data, err = readMinute(data, names); err != nil {
					return nil, err
				}
				if resumed && m.NodeID <= after {
					continue
				}
				k := nodeMinute{m.NodeID, m.Minute.UnixMicro()}
				if i, ok := minutes[k]; ok {
					mergeMinute(&p.minutes[i], m)
				} else {
					minutes[k] = len(p.minutes)
					p.minutes = append(p.minutes, m)
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, db.translate(err)
	}
	slices.SortFunc(p.samples, func(a, b agents.Sample) int {
		if c := strings.Compare(a.NodeID, b.NodeID); c != 0 {
			return c
		}
		return int(min(1, max(-1, a.Seq-b.Seq)))
	})
	slices.SortFunc(p.minutes, func(a, b agents.Minute) int {
		if c := strings.Compare(a.NodeID, b.NodeID); c != 0 {
			return c
		}
		return a.Minute.Compare(b.Minute)
	})
	return p, nil
}

type nodeMinute struct {
	node   string
	minute int64
}

// mergeMinute folds b into a (the same node-minute), as the upsert does.
func mergeMinute(a *agents.Minute, b agents.Minute) {
	a.Samples += b.Samples
	a.EnergyFirstJ, a.EnergyLastJ = min(a.EnergyFirstJ, b.EnergyFirstJ), max(a.EnergyLastJ, b.EnergyLastJ)
	a.PowerSumW += b.PowerSumW
	a.PowerMaxW = max(a.PowerMaxW, b.PowerMaxW)
	a.TempMaxC = max(a.TempMaxC, b.TempMaxC)
	a.UtilSum += b.UtilSum
}

// fold writes about budget of the plan's samples (all when negative),
// whole nodes at a time, with those nodes' minutes; the plan's last slice
// removes its rows from the journal.
func (t *telemetry) fold(ctx context.Context, db *DB, budget int) error {
	p := t.plan
	end := len(p.samples)
	if budget >= 0 && p.si+budget < end {
		end = max(p.si+budget, p.si+1)
		for end < len(p.samples) && p.samples[end].NodeID == p.samples[end-1].NodeID {
			end++
		}
	}
	last := end == len(p.samples)
	mend := p.mi
	for mend < len(p.minutes) && (last || p.minutes[mend].NodeID <= p.samples[end-1].NodeID) {
		mend++
	}
	if err := db.foldSamples(ctx, p.samples[p.si:end]); err != nil {
		return err
	}
	if err := db.foldMinutes(ctx, p.minutes[p.mi:mend]); err != nil {
		return err
	}
	if last {
		if _, err := db.exec(ctx, `DELETE FROM telemetry_journal WHERE id <= ?`, p.through); err != nil {
			return err
		}
		if _, err := db.exec(ctx, `DELETE FROM telemetry_fold`); err != nil {
			return err
		}
		t.plan, t.spare, t.folded = nil, p, max(t.folded, p.read)
		return nil
	}
	if _, err := db.exec(ctx, `INSERT INTO telemetry_fold (id, through, node_through) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET through = excluded.through, node_through = excluded.node_through`, p.through, p.samples[end-1].NodeID); err != nil {
		return err
	}
	p.si, p.mi = end, mend
	return nil
}

// foldRows is how many rows one statement of a fold writes: a statement
// costs about as much to run as the rows it writes.
const foldRows = 32

// A run is a node's samples from one fold, a row of node_sample_runs keyed
// by the highest sequence number among them: a fold writes a row for a
// node's ten or so samples instead of a row each, and a sample takes three
// fifths of the bytes it took in a row of its own (26.5 and 44.1 a sample
// in runs of ten: TestSampleRunBytes). data holds each sample's
// sequence number, time, energy and power (appendRunSample), in no
// particular order; a run's row met twice (a sample stored twice, which
// the windows keep from happening) takes both runs' samples, and a read
// returns a sequence number once.
const insertRunSQL = `INSERT INTO node_sample_runs (node_id, last_seq, first_seq, samples, last_at, data) VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT (node_id, last_seq) DO UPDATE SET first_seq = min(node_sample_runs.first_seq, excluded.first_seq),
	samples = node_sample_runs.samples + excluded.samples, last_at = max(node_sample_runs.last_at, excluded.last_at),
	data = node_sample_runs.data || excluded.data`

var (
	insertRunsSQL    = strings.Replace(insertRunSQL, "VALUES "+placeholders(6, 1), "VALUES "+placeholders(6, foldRows), 1)
	upsertMinutesSQL = strings.Replace(upsertMinuteSQL, "VALUES "+placeholders(9, 1), "VALUES "+placeholders(9, foldRows), 1)
)

// placeholders returns rows parenthesized lists of cols placeholders.
func placeholders(cols, rows int) string {
	row := "(" + strings.Repeat("?, ", cols-1) + "?)"
	return strings.Repeat(row+", ", rows-1) + row
}

// sampleRun is a row of node_sample_runs.
type sampleRun struct {
	node        string
	first, last int64 // sequence numbers
	samples     int
	lastAt      int64 // µs
	data        []byte
}

// foldSamples writes samples, by node and then sequence number, as a run
// per node, foldRows runs a statement while enough remain.
func (db *DB) foldSamples(ctx context.Context, ss []agents.Sample) error {
	var runs []sampleRun
	var data []byte
	for len(ss) > 0 {
		n := 1
		for n < len(ss) && ss[n].NodeID == ss[0].NodeID {
			n++
		}
		r := sampleRun{node: ss[0].NodeID, first: ss[0].Seq, last: ss[n-1].Seq, samples: n}
		start := len(data)
		for _, s := range ss[:n] {
			data = appendRunSample(data, s)
			r.lastAt = max(r.lastAt, micros(s.At))
		}
		r.data = data[start:len(data):len(data)]
		runs = append(runs, r)
		ss = ss[n:]
	}
	return foldRowsOf(ctx, db, runs, insertRunsSQL, insertRunSQL, 6, func(args []any, r sampleRun) []any {
		return append(args, r.node, r.last, r.first, r.samples, r.lastAt, r.data)
	})
}

// A node's reads take what the journal holds of it along with the
// tables, rather than folding the journal first: at a site's cadence a
// fold takes the writer for about a second, scanning the journal for one
// node some tens of milliseconds on the read pool (BenchmarkNodeRead:
// 1.15 s and 42 ms on a 2-core machine). One statement reads
// both, so that both are seen as of one moment (a fold that commits
// meanwhile moves rows from the journal to the tables). unfoldedSQL picks
// the journal rows a node's share of which is not in the tables: a fold
// under way has written it for the rows up to through once node_through
// is at or past the node (readPlan skips them the same way).
const unfoldedSQL = `id > COALESCE((SELECT through FROM telemetry_fold WHERE id = 1 AND node_through >= ?), 0)`

const (
	nodeSamplesSQL = `SELECT 1, data FROM node_sample_runs WHERE node_id = ? AND last_seq >= ? AND first_seq <= ?
	UNION ALL SELECT 0, data FROM telemetry_journal WHERE kind = 'samples' AND ` + unfoldedSQL
	nodeMinutesSQL = `SELECT 1, minute, samples, energy_first_j, energy_last_j, power_sum_w, power_max_w, temp_max_c, util_sum, NULL
	FROM node_minutes WHERE node_id = ? AND minute >= ? AND minute < ?
	UNION ALL SELECT 0, 0, 0, 0, 0, 0, 0, 0, 0, data FROM telemetry_journal WHERE kind = 'minutes' AND ` + unfoldedSQL
)

// nodeSamples returns a node's samples from sequence number from to to,
// in order, each once: those in node_sample_runs and those journaled.
func (db *DB) nodeSamples(ctx context.Context, nodeID string, from, to int64) ([]agents.Sample, error) {
	rows, err := db.query(ctx, nodeSamplesSQL, nodeID, from, to, nodeID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []agents.Sample
	key := entryKey(nodeID)
	for rows.Next() {
		var folded bool
		var data sql.RawBytes // decoded before the next row
		if err := rows.Scan(&folded, &data); err != nil {
			return nil, db.translate(err)
		}
		if !folded {
			if out, err = journalSamples(out, data, nodeID, key, from, to); err != nil {
				return nil, err
			}
			continue
		}
		run, err := readRun(nodeID, data)
		if err != nil {
			return nil, err
		}
		for _, s := range run {
			if s.Seq >= from && s.Seq <= to {
				out = append(out, s)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, db.translate(err)
	}
	return bySeq(out), nil
}

// nodeMinutes returns a node's minute rollups in [from, to), in order:
// node_minutes' rows merged with those journaled, as a fold merges them.
func (db *DB) nodeMinutes(ctx context.Context, nodeID string, from, to time.Time) ([]agents.Minute, error) {
	rows, err := db.query(ctx, nodeMinutesSQL, nodeID, micros(from), micros(to), nodeID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []agents.Minute
	key := entryKey(nodeID)
	at := map[int64]int{} // minute (µs) → index in out
	add := func(m agents.Minute) {
		k := micros(m.Minute)
		if i, ok := at[k]; ok {
			mergeMinute(&out[i], m)
			return
		}
		at[k] = len(out)
		out = append(out, m)
	}
	for rows.Next() {
		var folded bool
		var minute, ef, el int64
		m := agents.Minute{NodeID: nodeID}
		var data sql.RawBytes
		if err := rows.Scan(&folded, &minute, &m.Samples, &ef, &el, &m.PowerSumW, &m.PowerMaxW, &m.TempMaxC, &m.UtilSum, &data); err != nil {
			return nil, db.translate(err)
		}
		if folded {
			m.Minute, m.EnergyFirstJ, m.EnergyLastJ = fromMicros(minute), uint64(ef), uint64(el)
			add(m)
			continue
		}
		if err := journalMinutes(data, nodeID, key, micros(from), micros(to), add); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, db.translate(err)
	}
	for i := range out {
		out[i].Averages()
	}
	slices.SortFunc(out, func(a, b agents.Minute) int { return a.Minute.Compare(b.Minute) })
	return out, nil
}

// entryKey is how a journal entry of node begins: its name, encoded.
// A row without it holds nothing of the node and is not decoded (a row
// of a site's group commit holds one of a node's reports, or none).
func entryKey(node string) []byte {
	return appendString(nil, node)
}

// journalSamples appends a journal row's samples of node (whose entries
// begin with key) with sequence numbers from from to to.
func journalSamples(out []agents.Sample, data []byte, node string, key []byte, from, to int64) ([]agents.Sample, error) {
	if !bytes.Contains(data, key) {
		return out, nil
	}
	r := reader{b: data}
	for len(r.b) > 0 && r.err == nil {
		name := r.bytes()
		seq, at, e, w := r.varint(), r.varint(), r.uvarint(), r.float()
		if r.err == nil && string(name) == node && seq >= from && seq <= to {
			out = append(out, agents.Sample{NodeID: node, Seq: seq, At: fromMicros(at), EnergyJ: e, PowerW: w})
		}
	}
	return out, r.err
}

// journalMinutes calls add with a journal row's minutes of node (whose
// entries begin with key) in [from, to) (µs).
func journalMinutes(data []byte, node string, key []byte, from, to int64, add func(agents.Minute)) error {
	if !bytes.Contains(data, key) {
		return nil
	}
	r := reader{b: data}
	for len(r.b) > 0 && r.err == nil {
		name := r.bytes()
		minute := r.varint()
		m := agents.Minute{NodeID: node, Minute: fromMicros(minute), Samples: r.varint(), EnergyFirstJ: r.uvarint(), EnergyLastJ: r.uvarint()}
		m.PowerSumW, m.PowerMaxW, m.TempMaxC, m.UtilSum = r.float(), r.float(), r.float(), r.float()
		if r.err == nil && string(name) == node && minute >= from && minute < to {
			add(m)
		}
	}
	return r.err
}

// bySeq sorts samples by sequence number, keeping the first of each.
func bySeq(ss []agents.Sample) []agents.Sample {
	slices.SortStableFunc(ss, func(a, b agents.Sample) int { return cmp.Compare(a.Seq, b.Seq) })
	return slices.CompactFunc(ss, func(a, b agents.Sample) bool { return a.Seq == b.Seq })
}

// purgeRuns deletes a node's samples in sequence order up to its first
// taken at or after cut (µs), in ctx's transaction: the runs before the
// first run holding such a sample, and that run's samples before it. It
// returns how many samples it deleted.
func (db *DB) purgeRuns(ctx context.Context, nodeID string, cut int64) (int64, error) {
	var last int64
	var data []byte
	err := db.queryRow(ctx, `SELECT last_seq, data FROM node_sample_runs WHERE node_id = ? AND last_at >= ? ORDER BY last_seq LIMIT 1`, nodeID, cut).Scan(&last, &data)
	straddles := err == nil
	if !straddles && !errors.Is(err, sql.ErrNoRows) {
		return 0, db.translate(err)
	}
	if !straddles {
		last = math.MaxInt64
	}
	var n int64
	if err := db.queryRow(ctx, `SELECT COALESCE(SUM(samples), 0) FROM node_sample_runs WHERE node_id = ? AND last_seq < ?`, nodeID, last).Scan(&n); err != nil {
		return 0, db.translate(err)
	}
	if _, err := db.exec(ctx, `DELETE FROM node_sample_runs WHERE node_id = ? AND last_seq < ?`, nodeID, last); err != nil {
		return 0, err
	}
	if !straddles {
		return n, nil
	}
	ss, err := readRun(nodeID, data)
	if err != nil {
		return 0, err
	}
	ss = bySeq(ss)
	i := slices.IndexFunc(ss, func(s agents.Sample) bool { return micros(s.At) >= cut })
	if i <= 0 {
		return n, nil
	}
	var kept []byte
	for _, s := range ss[i:] {
		kept = appendRunSample(kept, s)
	}
	if _, err := db.exec(ctx, `UPDATE node_sample_runs SET first_seq = ?, samples = ?, data = ? WHERE node_id = ? AND last_seq = ?`,
		ss[i].Seq, len(ss)-i, kept, nodeID, last); err != nil {
		return 0, err
	}
	return n + int64(i), nil
}

// foldMinutes upserts minute rollups (one per node-minute) foldRows at a
// time.
func (db *DB) foldMinutes(ctx context.Context, ms []agents.Minute) error {
	return foldRowsOf(ctx, db, ms, upsertMinutesSQL, upsertMinuteSQL, 9, func(args []any, m agents.Minute) []any {
		return append(args, m.NodeID, micros(m.Minute), m.Samples, int64(m.EnergyFirstJ), int64(m.EnergyLastJ), m.PowerSumW, m.PowerMaxW, m.TempMaxC, m.UtilSum)
	})
}

// foldRowsOf writes rows with many (foldRows rows a statement) while
// enough remain, then with one (a row a statement); row appends a row's
// cols arguments.
func foldRowsOf[T any](ctx context.Context, db *DB, rows []T, many, one string, cols int, row func([]any, T) []any) error {
	args := make([]any, 0, cols*foldRows)
	for len(rows) > 0 {
		q, n := many, foldRows
		if len(rows) < foldRows {
			q, n = one, 1
		}
		args = args[:0]
		for _, r := range rows[:n] {
			args = row(args, r)
		}
		if _, err := db.exec(ctx, q, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// The journal's encoding: per sample, the node (length, bytes), sequence
// number, time (µs), energy and power; per minute, the node, minute (µs),
// samples, first and last energy, and power sum and peak, hottest GPU and
// utilization sum.

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendFloat(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

func appendSample(b []byte, s agents.Sample) []byte {
	b = appendString(b, s.NodeID)
	b = binary.AppendVarint(b, s.Seq)
	b = binary.AppendVarint(b, micros(s.At))
	b = binary.AppendUvarint(b, s.EnergyJ)
	return appendFloat(b, s.PowerW)
}

// appendRunSample appends a sample, less its node, to a run's data.
func appendRunSample(b []byte, s agents.Sample) []byte {
	b = binary.AppendVarint(b, s.Seq)
	b = binary.AppendVarint(b, micros(s.At))
	b = binary.AppendUvarint(b, s.EnergyJ)
	return appendFloat(b, s.PowerW)
}

func appendMinute(b []byte, m agents.Minute) []byte {
	b = appendString(b, m.NodeID)
	b = binary.AppendVarint(b, micros(m.Minute))
	b = binary.AppendVarint(b, m.Samples)
	b = binary.AppendUvarint(b, m.EnergyFirstJ)
	b = binary.AppendUvarint(b, m.EnergyLastJ)
	for _, f := range []float64{m.PowerSumW, m.PowerMaxW, m.TempMaxC, m.UtilSum} {
		b = appendFloat(b, f)
	}
	return b
}

var errJournal = errors.New("sqlstore: telemetry journal: a row is cut short")

// reader decodes a journal row; its first error sticks. Strings seen
// before are taken from names (one string per node), when it is set.
type reader struct {
	b     []byte
	err   error
	names map[string]string
}

// next returns the row's next n bytes; fewer left (or n < 0) is an error.
func (r *reader) next(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.err, r.b = errJournal, nil
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	r.next(varintLen(n))
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	r.next(varintLen(n))
	return v
}

// varintLen is the bytes a varint took, or -1 when it was cut short or
// overlong (binary.Uvarint's n ≤ 0).
func varintLen(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// bytes returns a string's bytes, within the row.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.next(-1)
		return nil
	}
	return r.next(int(n))
}

func (r *reader) string() string {
	p := r.bytes()
	if r.err != nil {
		return ""
	}
	if s, ok := r.names[string(p)]; ok {
		return s
	}
	s := string(p)
	if r.names != nil {
		r.names[s] = s
	}
	return s
}

func (r *reader) float() float64 {
	if p := r.next(8); p != nil {
		return math.Float64frombits(binary.LittleEndian.Uint64(p))
	}
	return 0
}

func readSample(b []byte, names map[string]string) (agents.Sample, []byte, error) {
	r := reader{b: b, names: names}
	s := agents.Sample{NodeID: r.string(), Seq: r.varint(), At: fromMicros(r.varint()), EnergyJ: r.uvarint(), PowerW: r.float()}
	return s, r.b, r.err
}

func readMinute(b []byte, names map[string]string) (agents.Minute, []byte, error) {
	r := reader{b: b, names: names}
	m := agents.Minute{NodeID: r.string(), Minute: fromMicros(r.varint()), Samples: r.varint(), EnergyFirstJ: r.uvarint(), EnergyLastJ: r.uvarint()}
	m.PowerSumW, m.PowerMaxW, m.TempMaxC, m.UtilSum = r.float(), r.float(), r.float(), r.float()
	return m, r.b, r.err
}

// readRun returns a run's samples of node.
func readRun(node string, data []byte) ([]agents.Sample, error) {
	r := reader{b: data}
	var out []agents.Sample
	for len(r.b) > 0 && r.err == nil {
		s := agents.Sample{NodeID: node, Seq: r.varint(), At: fromMicros(r.varint()), EnergyJ: r.uvarint(), PowerW: r.float()}
		if r.err == nil {
			out = append(out, s)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("sqlstore: a sample run of %s: %w", node, errRun)
	}
	return out, nil
}

var errRun = errors.New("a row is cut short")
