-- Node agents: site-scoped join tokens, per-node credentials (agent tokens
-- bound to one node) and each node's last heartbeat.
-- dialect: all
ALTER TABLE tokens ADD COLUMN node_id TEXT REFERENCES nodes(id);

CREATE TABLE join_tokens (
  id         TEXT PRIMARY KEY,
  site_id    TEXT NOT NULL REFERENCES sites(id),
  hash       TEXT NOT NULL UNIQUE,
  hint       TEXT NOT NULL,
  max_uses   BIGINT NOT NULL CHECK (max_uses > 0),
  uses       BIGINT NOT NULL DEFAULT 0,
  expires_at BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT,
  CHECK (uses <= max_uses)
);

-- The last heartbeat of each node: its sequence number (dedupe) and state.
CREATE TABLE agent_state (
  node_id    TEXT PRIMARY KEY REFERENCES nodes(id),
  seq        BIGINT NOT NULL,
  seen_at    BIGINT NOT NULL,
  body       TEXT NOT NULL
);
