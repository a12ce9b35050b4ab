-- Liveness across servers sharing one database: when each node was last
-- heard from (by any server), and leases that elect one server to judge.
-- dialect: all
CREATE TABLE node_seen (
  node_id TEXT PRIMARY KEY REFERENCES nodes(id),
  seen_at BIGINT NOT NULL
);
CREATE TABLE leases (
  name   TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  until  BIGINT NOT NULL
);
