// Package sqlstore is the store of record on SQLite (embedded, the default)
// and PostgreSQL (several server replicas). One schema, one migration set
// and one set of queries serve both; the few engine-specific spots branch
// on Dialect. It implements the Store interfaces the domain packages
// declare and translates driver errors into neocloud error kinds before they
// leave.
//
// Transactions travel in the context: InTx begins one (IMMEDIATE on SQLite)
// and every method called with that context joins it, so a request's effects,
// its audit record and its idempotency record commit together or not at all.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/neocloud/neocloud"
)

// Dialect names the engine.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is an open store. It is safe for concurrent use.
type DB struct {
	Dialect Dialect
	// w runs write transactions; on SQLite it has a single connection so that
	// writers queue in Go instead of spinning on SQLITE_BUSY.
	w *sql.DB
	// r serves reads outside transactions; on PostgreSQL it is w.
	r *sql.DB

	rebindMu sync.RWMutex
	rebound  map[string]string

	// stmts holds SQLite's prepared statements by pool and text, so that a
	// query is parsed once per connection rather than once per call.
	stmtMu sync.RWMutex
	stmts  map[stmtKey]*sql.Stmt

	// Path is the SQLite file, empty on PostgreSQL.
	Path string

	// tel journals heartbeat telemetry (SQLite; nil on PostgreSQL).
	tel *telemetry
	// lock holds the SQLite database for this process (nil on PostgreSQL).
	lock *os.File
}

// IsPostgresURL reports whether target names a PostgreSQL database.
func IsPostgresURL(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

// Open opens a store and applies the migrations. target is a postgres:// URL
// or the path of a SQLite database file (its directory is created).
func Open(ctx context.Context, target string) (*DB, error) {
	var db *DB
	var err error
	if IsPostgresURL(target) {
		db, err = openPostgres(target)
	} else {
		db, err = openSQLite(target)
	}
	if err != nil {
		return nil, err
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.prepareHotWrites(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if db.Dialect == SQLite {
		// What a crash left in the telemetry journal is folded now.
		db.tel = newTelemetry()
		if err := db.tel.settle(ctx, db); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// sqliteDSN opens a connection: WAL, fsync at every commit, and 16 MiB of
// page cache. A bigger cache buys little here and costs much. A reader's
// cache is emptied whenever another connection has committed since its
// last read (all the time: heartbeats commit every few milliseconds). The
// writer's hot pages are the last page of each node's telemetry, more
// than any cache holds at 25,000 nodes, read from the OS as a fold sweeps
// them. And while the database is under 1 GiB, a commit after a B-tree
// split that reordered pages walks the whole cache (SQLite moves a page
// through the page number at 1 GiB): at 64 MiB, 5% of a heartbeat's
// commit (go test -bench HeartbeatCommit ./sqlstore).
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=cache_size(-16384)&_pragma=temp_store(2)&_txlock=immediate"
}

func openSQLite(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlstore: create data dir: %w", err)
	}
	// One process at a time: what a server keeps in memory of the store
	// (its caches, the telemetry journal's state) assumes it is the only
	// writer. Several servers share PostgreSQL instead.
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("sqlstore: %s is open in another process: one server per SQLite database (several share PostgreSQL)", path)
	}
	w, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	r, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		w.Close()
		lock.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	db := &DB{Dialect: SQLite, w: w, r: r, Path: path, rebound: map[string]string{}, stmts: map[stmtKey]*sql.Stmt{}, lock: lock}
	// Touch the writer first so the WAL switch happens before readers open.
	if err := w.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: open %s: %w", path, err)
	}
	return db, nil
}

// hotWrites are statements run in many transactions, prepared once on the
// writer's connection (after migrations: their tables must exist) so that
// a transaction reuses them instead of parsing them again.
var hotWrites = []string{upsertMinuteSQL, insertJournalSQL, upsertMinutesSQL, insertRunSQL, insertRunsSQL}

func (db *DB) prepareHotWrites(ctx context.Context) error {
	if db.stmts == nil {
		return nil
	}
	for _, q := range hotWrites {
		st, err := db.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlstore: prepare: %w", err)
		}
		db.stmtMu.Lock()
		db.stmts[stmtKey{db.w, q}] = st
		db.stmtMu.Unlock()
	}
	return nil
}

func openPostgres(url string) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: parse database url: %w", err)
	}
	// An acknowledged write must survive a crash.
	cfg.RuntimeParams["synchronous_commit"] = "on"
	cfg.RuntimeParams["timezone"] = "UTC"
	w := stdlib.OpenDB(*cfg)
	w.SetMaxOpenConns(32)
	w.SetMaxIdleConns(32)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlstore: connect: %w", err)
	}
	return &DB{Dialect: Postgres, w: w, r: w, rebound: map[string]string{}}, nil
}

// Close closes the store. On SQLite it checkpoints the WAL first.
func (db *DB) Close() error {
	db.stmtMu.Lock()
	for k, st := range db.stmts {
		st.Close()
		delete(db.stmts, k)
	}
	db.stmtMu.Unlock()
	if db.Dialect == SQLite {
		db.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	}
	err := db.w.Close()
	if db.r != db.w {
		if e := db.r.Close(); err == nil {
			err = e
		}
	}
	if db.lock != nil {
		db.lock.Close() // and with it the lock
	}
	return err
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.r.PingContext(ctx); err != nil {
		return &neocloud.Error{Kind: neocloud.KindUnavailable, Message: "database unavailable", Err: err}
	}
	return nil
}

// RawDB returns the writer pool, for tests and maintenance tools that must
// go around the store (e.g. to show the audit trigger refusing an UPDATE).
func (db *DB) RawDB() *sql.DB { return db.w }

type txKey struct{}

// txState is the transaction a context carries and the work deferred until
// it commits.
type txState struct {
	tx    *sql.Tx
	after []func()
	ended []func(committed bool)
	// stmts are this transaction's prepared statements (SQLite): a
	// statement run for many rows is parsed once. They close with it.
	stmts map[string]*sql.Stmt
}

// InTx runs fn in a write transaction carried by the context it is given.
// If ctx already carries one, fn joins it. fn's error rolls back; after a
// commit the functions registered with AfterCommit run, in order.
func (db *DB) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	if txOf(ctx) != nil {
		return fn(ctx)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return db.translate(fmt.Errorf("begin: %w", err))
	}
	st := &txState{tx: tx}
	end := func(committed bool) {
		for _, f := range st.ended {
			f(committed)
		}
	}
	if err := fn(context.WithValue(ctx, txKey{}, st)); err != nil {
		// Memory is undone before the rollback gives the connection to
		// the next transaction.
		end(false)
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		end(false)
		return db.translate(fmt.Errorf("commit: %w", err))
	}
	end(true)
	for _, f := range st.after {
		f()
	}
	return nil
}

// TxID identifies the transaction ctx carries (nil for none), so that a
// lock taken for a transaction can be taken again within it.
func (db *DB) TxID(ctx context.Context) any {
	if st := txOf(ctx); st != nil {
		return st
	}
	return nil
}

// txOf is the transaction ctx carries (nil: none, or read outside it).
func txOf(ctx context.Context) *txState {
	st, _ := ctx.Value(txKey{}).(*txState)
	return st
}

// Committed returns a context that reads what is committed, outside ctx's
// transaction, on the read pool: reads that may run in parallel. Nothing
// may be written with it. Within a transaction that has written nothing
// yet and holds the usage lock (LockUsage), it reads what the
// transaction would.
func (db *DB) Committed(ctx context.Context) context.Context {
	return context.WithValue(ctx, txKey{}, (*txState)(nil))
}

// OnEnd defers fn until the context's transaction ends, committed or not:
// a rollback's run before the connection is given back, a commit's (or a
// failed commit's) as soon as it returns, before the AfterCommit
// functions. Without a transaction fn(true) runs at once. In-memory state
// changed ahead of a commit is kept or undone this way; a commit's outcome
// is known only once it returns, after the next transaction may have begun.
func (db *DB) OnEnd(ctx context.Context, fn func(committed bool)) {
	if st := txOf(ctx); st != nil {
		st.ended = append(st.ended, fn)
		return
	}
	fn(true)
}

// AfterCommit defers fn until the context's transaction commits (it never
// runs if it rolls back); without a transaction fn runs at once. In-memory
// state that mirrors the database is updated this way.
func (db *DB) AfterCommit(ctx context.Context, fn func()) {
	if st := txOf(ctx); st != nil {
		st.after = append(st.after, fn)
		return
	}
	fn()
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// q returns the context's transaction or the read pool.
func (db *DB) q(ctx context.Context) querier {
	if st := txOf(ctx); st != nil {
		return st.tx
	}
	return db.r
}

// rebind turns ? placeholders into $n for PostgreSQL (cached per query).
// Queries in this package never hold a literal '?'.
func (db *DB) rebind(query string) string {
	if db.Dialect != Postgres {
		return query
	}
	db.rebindMu.RLock()
	out, ok := db.rebound[query]
	db.rebindMu.RUnlock()
	if ok {
		return out
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	out = b.String()
	db.rebindMu.Lock()
	db.rebound[query] = out
	db.rebindMu.Unlock()
	return out
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// maxStmts bounds the statement cache: texts built per call (IN lists of
// varying length) stop being cached once it is full.
const maxStmts = 1024

// stmt returns query prepared on pool, or nil when it is not cached (not
// SQLite, the cache is full, or preparing failed: the caller then runs the
// text as it is and gets the error there).
func (db *DB) stmt(ctx context.Context, pool *sql.DB, query string) *sql.Stmt {
	if db.stmts == nil {
		return nil
	}
	k := stmtKey{pool, query}
	db.stmtMu.RLock()
	st, ok := db.stmts[k]
	n := len(db.stmts)
	db.stmtMu.RUnlock()
	if ok || n >= maxStmts {
		return st
	}
	st, err := pool.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil
	}
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	if prev, ok := db.stmts[k]; ok {
		st.Close()
		return prev
	}
	db.stmts[k] = st
	return st
}

// prepared returns ctx's querier for query: a cached statement (bound to
// the context's transaction, if any) where there is one.
func (db *DB) prepared(ctx context.Context, query string) querier {
	if db.stmts == nil {
		return db.q(ctx)
	}
	if st := txOf(ctx); st != nil {
		// The writer's one connection is the transaction's: hot statements
		// were prepared on it at start; others are prepared on the
		// transaction itself.
		db.stmtMu.RLock()
		hot, ok := db.stmts[stmtKey{db.w, query}]
		db.stmtMu.RUnlock()
		if ok {
			return stmtQuerier{st.tx.StmtContext(ctx, hot)}
		}
		if ps, ok := st.stmts[query]; ok {
			return stmtQuerier{ps}
		}
		if len(st.stmts) < maxStmts {
			if ps, err := st.tx.PrepareContext(ctx, query); err == nil {
				if st.stmts == nil {
					st.stmts = map[string]*sql.Stmt{}
				}
				st.stmts[query] = ps
				return stmtQuerier{ps}
			}
		}
		return st.tx
	}
	if ps := db.stmt(ctx, db.r, query); ps != nil {
		return stmtQuerier{ps}
	}
	return db.r
}

// stmtQuerier runs a prepared statement; the query text is its own.
type stmtQuerier struct{ st *sql.Stmt }

func (s stmtQuerier) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return s.st.ExecContext(ctx, args...)
}
func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return s.st.QueryContext(ctx, args...)
}
func (s stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return s.st.QueryRowContext(ctx, args...)
}

func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := db.prepared(ctx, query).ExecContext(ctx, db.rebind(query), args...)
	return res, db.translate(err)
}

func (db *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := db.prepared(ctx, query).QueryContext(ctx, db.rebind(query), args...)
	return rows, db.translate(err)
}

func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return db.prepared(ctx, query).QueryRowContext(ctx, db.rebind(query), args...)
}

// write runs fn in the context's transaction, or in a new one.
func (db *DB) write(ctx context.Context, fn func(ctx context.Context) error) error {
	return db.InTx(ctx, fn)
}

// translate maps driver errors to neocloud kinds: unique and check
// violations become Conflict and Invalid; a lost connection Unavailable.
func (db *DB) translate(err error) error {
	if err == nil {
		return nil
	}
	var ne *neocloud.Error
	if errors.As(err, &ne) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return &neocloud.Error{Kind: neocloud.KindConflict, Message: "already exists", Err: err}
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return &neocloud.Error{Kind: neocloud.KindInvalid, Message: "violates a constraint", Err: err}
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return &neocloud.Error{Kind: neocloud.KindUnavailable, Message: "database busy", Err: err}
		}
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return &neocloud.Error{Kind: neocloud.KindConflict, Message: "already exists", Err: err}
		case "23514", "23503", "23502":
			return &neocloud.Error{Kind: neocloud.KindInvalid, Message: "violates a constraint", Err: err}
		case "40001", "40P01", "57P01", "57P03", "53300":
			return &neocloud.Error{Kind: neocloud.KindUnavailable, Message: "database unavailable, retry", Err: err}
		}
		return err
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, sql.ErrConnDone) {
		return &neocloud.Error{Kind: neocloud.KindUnavailable, Message: "database unavailable", Err: err}
	}
	return err
}

// micros converts between time.Time and stored microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

// collect runs a query and scans every row with scan.
func collect[T any](db *DB, ctx context.Context, scan func(interface{ Scan(...any) error }) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		x, err := scan(rows)
		if err != nil {
			return nil, db.translate(err)
		}
		out = append(out, x)
	}
	return out, db.translate(rows.Err())
}
