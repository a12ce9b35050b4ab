-- The server processes (replicas) sharing this database: each records
-- itself when it starts, every few seconds while it runs, and when it
-- stops, so that operators see which are up and which holds each lease.
-- dialect: all
CREATE TABLE replicas (
  id         TEXT PRIMARY KEY,
  host       TEXT NOT NULL,
  addr       TEXT NOT NULL,
  pid        BIGINT NOT NULL,
  version    TEXT NOT NULL,
  started_at BIGINT NOT NULL,
  seen_at    BIGINT NOT NULL,
  stopped_at BIGINT
);
