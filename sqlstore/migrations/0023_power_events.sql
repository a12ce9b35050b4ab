-- Power events (a turbine trip, a feed dropped, an emergency cap) with the
-- load shed for each: caps and preemptions and the watts they saved.
-- dialect: all
CREATE TABLE power_events (
  id      TEXT PRIMARY KEY,
  site_id TEXT NOT NULL REFERENCES sites(id),
  at      BIGINT NOT NULL,
  body    TEXT NOT NULL
);
CREATE INDEX power_events_site ON power_events (site_id, at);
