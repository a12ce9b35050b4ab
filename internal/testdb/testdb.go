// Package testdb gives tests a fresh store on SQLite (always) and on
// PostgreSQL when NEOCLOUD_TEST_DATABASE_URL names a server: each call
// creates its own database and drops it at cleanup. With the variable unset
// PostgreSQL tests skip, except under CI=true, where they fail.
package testdb

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/sqlstore"
)

// EnvURL is the variable naming the PostgreSQL server for tests.
const EnvURL = "NEOCLOUD_TEST_DATABASE_URL"

// SQLite opens a fresh SQLite store in a temp dir.
func SQLite(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "neocloud.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// PostgresURL creates a fresh database and returns its URL, or skips.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvURL)
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is unset under CI=true: PostgreSQL tests must run", EnvURL)
		}
		t.Skipf("%s unset: skipping PostgreSQL", EnvURL)
	}
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvURL, err)
	}
	admin := stdlib.OpenDB(*cfg)
	defer admin.Close()
	name := "nctest_" + strings.ToLower(neocloud.NewID("")[10:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		a := stdlib.OpenDB(*cfg)
		defer a.Close()
		a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Postgres opens a fresh PostgreSQL store, or skips.
func Postgres(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Each runs fn as a subtest on each engine.
func Each(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// Raw opens a plain connection to the same database, around the store.
func Raw(db *sqlstore.DB) *sql.DB { return db.RawDB() }
