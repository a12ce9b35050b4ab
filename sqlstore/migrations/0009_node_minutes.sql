-- Per-node minute rollups of agent reports (kept 7 days), and per-GPU
-- energy counter readings at allocation boundaries and hourly (billing).
-- dialect: all
CREATE TABLE node_minutes (
  node_id        TEXT NOT NULL REFERENCES nodes(id),
  minute         BIGINT NOT NULL,
  samples        BIGINT NOT NULL,
  energy_first_j BIGINT NOT NULL,
  energy_last_j  BIGINT NOT NULL,
  power_sum_w    DOUBLE PRECISION NOT NULL,
  power_max_w    DOUBLE PRECISION NOT NULL,
  temp_max_c     DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (node_id, minute)
);
CREATE INDEX node_minutes_minute ON node_minutes (minute);
CREATE INDEX node_samples_at ON node_samples (at);

CREATE TABLE energy_readings (
  node_id       TEXT NOT NULL REFERENCES nodes(id),
  gpu           INTEGER NOT NULL,
  at            BIGINT NOT NULL,
  energy_j      BIGINT NOT NULL,
  reason        TEXT NOT NULL CHECK (reason IN ('ready','released','hourly')),
  allocation_id TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (node_id, gpu, at, reason)
);
