-- Every change of a node's health, with its reasons: the evidence behind
-- SLA downtime (a node degraded by a condition a contract names, failed,
-- unreachable) and behind invoice lineage.
-- dialect: all
CREATE TABLE node_health_log (
  node_id TEXT NOT NULL REFERENCES nodes(id),
  at      BIGINT NOT NULL,
  seq     BIGINT NOT NULL,
  health  TEXT NOT NULL,
  reasons TEXT NOT NULL,
  PRIMARY KEY (node_id, at, seq)
);
CREATE INDEX node_health_log_at ON node_health_log (at);

-- The availability and down intervals (with their evidence) behind each SLA
-- credit line of an invoice: what an auditor walks to.
CREATE TABLE credit_sources (
  invoice_id TEXT NOT NULL REFERENCES invoices(id),
  line       INTEGER NOT NULL,
  body       TEXT NOT NULL,
  PRIMARY KEY (invoice_id, line)
);
