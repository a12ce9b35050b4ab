-- Break-fix: tenants' reports, reboots, GPU resets and replacement
-- requests on their own nodes.
-- dialect: all
CREATE TABLE break_fix (
  id             TEXT PRIMARY KEY,
  node_id        TEXT NOT NULL REFERENCES nodes(id),
  tenant_id      TEXT NOT NULL DEFAULT '',
  reservation_id TEXT NOT NULL DEFAULT '',
  contract_id    TEXT NOT NULL DEFAULT '',
  kind           TEXT NOT NULL CHECK (kind IN ('report','reboot','gpu_reset','replace')),
  created_by     TEXT NOT NULL,
  created_at     BIGINT NOT NULL,
  confirmed_at   BIGINT,
  body           TEXT NOT NULL
);
CREATE INDEX break_fix_contract ON break_fix (contract_id, kind, created_at);
