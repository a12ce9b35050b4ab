package sqlstore

import (
	"bufio"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/neocloud/neocloud/agents"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered file. Its body is split into sections by lines
// "-- dialect: all|sqlite|postgres"; a store runs the "all" sections and its
// own, in file order, as one transaction.
type migration struct {
	version int
	name    string
	body    string
}

func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("sqlstore: migration %s: name must start with a number", base)
		}
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, body: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("sqlstore: two migrations numbered %d", ms[i].version)
		}
	}
	return ms, nil
}

// sqlFor returns the statements of m that apply to dialect d.
func (m migration) sqlFor(d Dialect) string {
	var out strings.Builder
	keep := true
	sc := bufio.NewScanner(strings.NewReader(m.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "-- dialect:"); ok {
			w := strings.TrimSpace(rest)
			keep = w == "all" || w == string(d)
			continue
		}
		if keep {
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	return out.String()
}

// migrate applies pending migrations. Several servers may start at once:
// on PostgreSQL an advisory transaction lock serializes them, on SQLite the
// IMMEDIATE transaction does.
func (db *DB) migrate(ctx context.Context) error { return db.migrateThrough(ctx, math.MaxInt) }

// migrateThrough applies the pending migrations numbered up to through.
func (db *DB) migrateThrough(ctx context.Context, through int) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	return db.InTx(ctx, func(ctx context.Context) error {
		if db.Dialect == Postgres {
			if _, err := db.exec(ctx, "SELECT pg_advisory_xact_lock(7311001)"); err != nil {
				return fmt.Errorf("sqlstore: migration lock: %w", err)
			}
		}
		if _, err := db.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)`); err != nil {
			return fmt.Errorf("sqlstore: schema_migrations: %w", err)
		}
		applied := map[int]bool{}
		versions, err := collect(db, ctx, func(r scanner) (int, error) {
			var v int
			return v, r.Scan(&v)
		}, "SELECT version FROM schema_migrations")
		if err != nil {
			return err
		}
		for _, v := range versions {
			applied[v] = true
		}
		for _, m := range ms {
			if applied[m.version] || m.version > through {
				continue
			}
			// Multi-statement text runs as one Exec; no placeholders here.
			if _, err := db.q(ctx).ExecContext(ctx, m.sqlFor(db.Dialect)); err != nil {
				return fmt.Errorf("sqlstore: migration %s: %w", m.name, err)
			}
			if step := afterMigration[m.version]; step != nil {
				if err := step(ctx, db); err != nil {
					return fmt.Errorf("sqlstore: migration %s: %w", m.name, err)
				}
			}
			if _, err := db.exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", m.version, m.name); err != nil {
				return err
			}
		}
		return nil
	})
}

// afterMigration are steps in Go that a migration takes after its SQL, in
// its transaction, by version.
var afterMigration = map[int]func(context.Context, *DB) error{
	30: sampleRunsFromRows,
}

// sampleRunsFromRows moves SQLite's node_samples into node_sample_runs, a
// node at a time, runsOf samples to a run, and drops the table.
func sampleRunsFromRows(ctx context.Context, db *DB) error {
	if db.Dialect != SQLite {
		return nil
	}
	ids, err := collect(db, ctx, func(r scanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	}, `SELECT DISTINCT node_id FROM node_samples ORDER BY node_id`)
	if err != nil {
		return err
	}
	for _, id := range ids {
		ss, err := collect(db, ctx, func(r scanner) (agents.Sample, error) {
			s := agents.Sample{NodeID: id}
			var at, e int64
			err := r.Scan(&s.Seq, &at, &e, &s.PowerW)
			s.At, s.EnergyJ = fromMicros(at), uint64(e)
			return s, err
		}, `SELECT seq, at, energy_j, power_w FROM node_samples WHERE node_id = ? ORDER BY seq`, id)
		if err != nil {
			return err
		}
		for run := range slices.Chunk(ss, runsOf) {
			if err := db.foldSamples(ctx, run); err != nil {
				return err
			}
		}
	}
	_, err = db.exec(ctx, `DROP TABLE node_samples`)
	return err
}

// runsOf is how many of a node's samples one run made from node_samples
// holds: most of an hour's at the agents' 10 s interval (a read decodes a
// run whole).
const runsOf = 256
