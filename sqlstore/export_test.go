package sqlstore

// KeptOnWriter reports whether query is prepared on the writer's
// connection for every transaction to reuse.
func (db *DB) KeptOnWriter(query string) bool {
	db.stmtMu.RLock()
	defer db.stmtMu.RUnlock()
	_, ok := db.stmts[stmtKey{db.w, query}]
	return ok
}

// SpotInsertSQL is the statement PutSpotPoint runs.
const SpotInsertSQL = spotInsertSQL
