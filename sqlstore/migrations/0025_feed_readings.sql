-- Supply meters: each hour's energy through a grid feed's or a generation
-- unit's meter, as the utility or the plant reports it (a corrected
-- reading replaces the hour's). Site reports reconcile them against the
-- facility energy the nodes and the PUE account for.
-- dialect: all
CREATE TABLE feed_readings (
  site_id TEXT NOT NULL REFERENCES sites(id),
  feed    TEXT NOT NULL,
  hour    BIGINT NOT NULL,
  wh      BIGINT NOT NULL CHECK (wh >= 0),
  at      BIGINT NOT NULL,
  PRIMARY KEY (site_id, hour, feed)
);
