package sqlstore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestSQLiteOneOpener checks that a SQLite database is open in one place at
// a time (what a server keeps in memory assumes it is the only writer),
// and free again once closed.
func TestSQLiteOneOpener(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "one.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := Open(ctx, path); err == nil {
		second.Close()
		t.Fatal("a second open of the same SQLite database succeeded")
	} else if !strings.Contains(err.Error(), "open in another process") {
		t.Fatalf("second open: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	again.Close()
}
