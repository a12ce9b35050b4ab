-- Orders for node agents, fenced by the node's assignment generation.
-- dialect: all
CREATE TABLE node_commands (
  id         TEXT PRIMARY KEY,
  node_id    TEXT NOT NULL REFERENCES nodes(id),
  kind       TEXT NOT NULL CHECK (kind IN ('drain','health_check','sanitize','power_cap')),
  generation BIGINT NOT NULL,
  power_w    BIGINT NOT NULL DEFAULT 0,
  state      TEXT NOT NULL CHECK (state IN ('pending','done','failed','refused')),
  message    TEXT NOT NULL DEFAULT '',
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  done_at    BIGINT
);
CREATE INDEX node_commands_pending ON node_commands (node_id, state);
