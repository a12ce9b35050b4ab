-- A site's IT energy hour by hour: every node's input energy of record
-- (metered at the node's input, or estimated from its GPUs), derived from
-- the hourly energy readings by the power meter; the power and emissions
-- reports rest on it.
-- dialect: all
CREATE TABLE site_energy (
  site_id         TEXT NOT NULL REFERENCES sites(id),
  hour            BIGINT NOT NULL,
  node_energy_j   BIGINT NOT NULL,
  nodes           INTEGER NOT NULL,
  estimated_nodes INTEGER NOT NULL,
  derived_at      BIGINT NOT NULL,
  PRIMARY KEY (site_id, hour)
);

CREATE TABLE power_meter_state (
  id      INTEGER PRIMARY KEY CHECK (id = 1),
  through BIGINT NOT NULL
);

-- The usage of a site's hours, by tenant (reports).
CREATE INDEX usage_records_site ON usage_records (site_id, hour);
