-- Remediation: agent commands for burn-in, reboot and GPU reset; repair
-- tickets (failed → repair → burn_in → sanitizing → available) and the
-- sanitize records a node needs before another tenant gets it.
-- dialect: sqlite
CREATE TABLE node_commands_new (
  id         TEXT PRIMARY KEY,
  node_id    TEXT NOT NULL REFERENCES nodes(id),
  kind       TEXT NOT NULL CHECK (kind IN ('drain','health_check','sanitize','power_cap','burn_in','reboot','gpu_reset')),
  generation BIGINT NOT NULL,
  power_w    BIGINT NOT NULL DEFAULT 0,
  state      TEXT NOT NULL CHECK (state IN ('pending','done','failed','refused')),
  message    TEXT NOT NULL DEFAULT '',
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  done_at    BIGINT
);
INSERT INTO node_commands_new SELECT id, node_id, kind, generation, power_w, state, message, created_by, created_at, done_at FROM node_commands;
DROP TABLE node_commands;
ALTER TABLE node_commands_new RENAME TO node_commands;
CREATE INDEX node_commands_pending ON node_commands (node_id, state);
-- dialect: postgres
ALTER TABLE node_commands DROP CONSTRAINT node_commands_kind_check;
ALTER TABLE node_commands ADD CONSTRAINT node_commands_kind_check CHECK (kind IN ('drain','health_check','sanitize','power_cap','burn_in','reboot','gpu_reset'));
-- dialect: all
CREATE TABLE repair_tickets (
  id          TEXT PRIMARY KEY,
  node_id     TEXT NOT NULL REFERENCES nodes(id),
  state       TEXT NOT NULL CHECK (state IN ('open','burn_in','sanitizing','closed')),
  reasons     TEXT NOT NULL,
  gpus        TEXT NOT NULL,
  quarantined BOOLEAN NOT NULL DEFAULT FALSE,
  command_id  TEXT NOT NULL DEFAULT '',
  message     TEXT NOT NULL DEFAULT '',
  opened_at   BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL,
  closed_at   BIGINT
);
CREATE INDEX repair_tickets_node ON repair_tickets (node_id, opened_at);
CREATE INDEX repair_tickets_state ON repair_tickets (state);
CREATE TABLE sanitize_records (
  id          TEXT PRIMARY KEY,
  node_id     TEXT NOT NULL REFERENCES nodes(id),
  ticket_id   TEXT NOT NULL DEFAULT '',
  command_id  TEXT NOT NULL DEFAULT '',
  result      TEXT NOT NULL CHECK (result IN ('done','failed')),
  steps       TEXT NOT NULL,
  started_at  BIGINT NOT NULL,
  finished_at BIGINT NOT NULL
);
CREATE INDEX sanitize_records_node ON sanitize_records (node_id, finished_at);
