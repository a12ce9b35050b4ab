-- Fleet: SKUs, sites, nodes and their GPUs. The topology tree is derived
-- from node domain paths; declared lists and maps are JSON text.
-- dialect: all
CREATE TABLE skus (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL
);

CREATE TABLE sites (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  region      TEXT NOT NULL,
  timezone    TEXT NOT NULL,
  levels      TEXT NOT NULL,
  hierarchies TEXT NOT NULL,
  power       TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL
);

CREATE TABLE nodes (
  id             TEXT PRIMARY KEY,
  site_id        TEXT NOT NULL REFERENCES sites(id),
  hostname       TEXT NOT NULL UNIQUE,
  serial         TEXT NOT NULL,
  sku            TEXT NOT NULL REFERENCES skus(name),
  domain         TEXT NOT NULL,
  hierarchies    TEXT NOT NULL,
  lifecycle      TEXT NOT NULL CHECK (lifecycle IN ('provisioning','burn_in','available','maintenance','repair','sanitizing','retired')),
  health         TEXT NOT NULL CHECK (health IN ('ok','degraded','unreachable','failed')),
  health_reasons TEXT NOT NULL,
  cordoned       BOOLEAN NOT NULL,
  spare          BOOLEAN NOT NULL,
  version        BIGINT NOT NULL,
  created_at     BIGINT NOT NULL,
  updated_at     BIGINT NOT NULL
);
CREATE INDEX nodes_site ON nodes (site_id, id);

CREATE TABLE gpus (
  node_id    TEXT NOT NULL REFERENCES nodes(id),
  idx        INTEGER NOT NULL CHECK (idx >= 0),
  uuid       TEXT,
  model      TEXT NOT NULL,
  memory_mib INTEGER NOT NULL,
  PRIMARY KEY (node_id, idx)
);
-- A GPU UUID names one device in the whole fleet.
CREATE UNIQUE INDEX gpus_uuid ON gpus (uuid) WHERE uuid IS NOT NULL;
