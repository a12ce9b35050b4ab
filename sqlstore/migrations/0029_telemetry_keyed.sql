-- On SQLite, node_samples and node_minutes are kept in their primary key's
-- order alone: WITHOUT ROWID, and with no index by time. A fold from the
-- telemetry journal writes its rows in key order, a node's rows after one
-- another; an index by time took the same rows in another order, a page
-- for nearly every row, in every commit. What reads them by time reads a
-- node at a time by key (the purge, a site's utilization by hour).
-- dialect: sqlite
CREATE TABLE node_samples_keyed (
  node_id  TEXT NOT NULL REFERENCES nodes(id),
  seq      BIGINT NOT NULL,
  at       BIGINT NOT NULL,
  energy_j BIGINT NOT NULL,
  power_w  DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (node_id, seq)
) WITHOUT ROWID;
INSERT INTO node_samples_keyed (node_id, seq, at, energy_j, power_w)
  SELECT node_id, seq, at, energy_j, power_w FROM node_samples ORDER BY node_id, seq;
DROP TABLE node_samples;
ALTER TABLE node_samples_keyed RENAME TO node_samples;

CREATE TABLE node_minutes_keyed (
  node_id        TEXT NOT NULL REFERENCES nodes(id),
  minute         BIGINT NOT NULL,
  samples        BIGINT NOT NULL,
  energy_first_j BIGINT NOT NULL,
  energy_last_j  BIGINT NOT NULL,
  power_sum_w    DOUBLE PRECISION NOT NULL,
  power_max_w    DOUBLE PRECISION NOT NULL,
  temp_max_c     DOUBLE PRECISION NOT NULL,
  util_sum       DOUBLE PRECISION NOT NULL DEFAULT 0,
  PRIMARY KEY (node_id, minute)
) WITHOUT ROWID;
INSERT INTO node_minutes_keyed (node_id, minute, samples, energy_first_j, energy_last_j, power_sum_w, power_max_w, temp_max_c, util_sum)
  SELECT node_id, minute, samples, energy_first_j, energy_last_j, power_sum_w, power_max_w, temp_max_c, util_sum FROM node_minutes ORDER BY node_id, minute;
DROP TABLE node_minutes;
ALTER TABLE node_minutes_keyed RENAME TO node_minutes;
