-- On SQLite, heartbeat telemetry is journaled: a group commit appends its
-- samples and minute rollups as one row here (a page or two) instead of a
-- row per sample and per node-minute in tables keyed by node (a page or
-- more each); later commits fold the journal into node_samples and
-- node_minutes a slice at a time, in key order. telemetry_fold says how
-- far a fold that is under way has got: every node up to node_through of
-- the rows up to id through.
-- dialect: sqlite
CREATE TABLE telemetry_journal (
  id   INTEGER PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('samples','minutes')),
  data BLOB NOT NULL
);
CREATE TABLE telemetry_fold (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  through      BIGINT NOT NULL,
  node_through TEXT NOT NULL
);
