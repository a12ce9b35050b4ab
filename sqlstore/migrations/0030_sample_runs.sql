-- On SQLite, a node's samples are kept as runs: a row per node per fold of
-- the telemetry journal, keyed by its highest sequence number, holding the
-- fold's samples of that node (sqlstore's appendRunSample). A fold writes a
-- row for ten or so samples instead of a row each. The rows of
-- node_samples become runs (sampleRunsFromRows, after this file) and the
-- table goes.
-- dialect: sqlite
CREATE TABLE node_sample_runs (
  node_id   TEXT NOT NULL REFERENCES nodes(id),
  last_seq  BIGINT NOT NULL,
  first_seq BIGINT NOT NULL,
  samples   BIGINT NOT NULL,
  last_at   BIGINT NOT NULL,
  data      BLOB NOT NULL,
  PRIMARY KEY (node_id, last_seq)
) WITHOUT ROWID;
