-- Planned maintenance: windows of nodes, rolled in batches.
-- dialect: all
CREATE TABLE maintenance (
  id         TEXT PRIMARY KEY,
  site_id    TEXT NOT NULL REFERENCES sites(id),
  state      TEXT NOT NULL CHECK (state IN ('scheduled','active','done','cancelled')),
  start_at   BIGINT NOT NULL,
  end_at     BIGINT NOT NULL,
  due_at     BIGINT NOT NULL,
  body       TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX maintenance_site ON maintenance (site_id, state);
CREATE INDEX maintenance_due ON maintenance (due_at);
