-- Selling capacity: the price book, quotas, quotes, contracts,
-- reservations with their chosen nodes, allocations and tenant events.
-- Money is BIGINT micro-units; rates are micro-units per GPU-hour.
-- dialect: all
CREATE TABLE prices (
  id                  TEXT PRIMARY KEY,
  sku                 TEXT NOT NULL REFERENCES skus(name),
  class               TEXT NOT NULL CHECK (class IN ('lease','reserved','on_demand','spot','internal')),
  effective_at        BIGINT NOT NULL,
  list_micros         BIGINT NOT NULL CHECK (list_micros >= 0),
  term_discounts      TEXT NOT NULL,
  volume_tiers        TEXT NOT NULL,
  spot_floor_micros   BIGINT NOT NULL CHECK (spot_floor_micros >= 0),
  spot_ceiling_micros BIGINT NOT NULL CHECK (spot_ceiling_micros >= spot_floor_micros),
  currency            TEXT NOT NULL,
  created_by          TEXT NOT NULL,
  created_at          BIGINT NOT NULL,
  UNIQUE (sku, class, effective_at)
);

CREATE TABLE quotas (
  tenant_id  TEXT NOT NULL REFERENCES tenants(id),
  sku        TEXT NOT NULL REFERENCES skus(name),
  class      TEXT NOT NULL,
  gpus       BIGINT NOT NULL CHECK (gpus >= 0),
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (tenant_id, sku, class)
);

CREATE TABLE contracts (
  id                TEXT PRIMARY KEY,
  tenant_id         TEXT NOT NULL REFERENCES tenants(id),
  kind              TEXT NOT NULL CHECK (kind IN ('lease','reserved','on_demand','spot','internal')),
  sku               TEXT NOT NULL REFERENCES skus(name),
  terms             TEXT NOT NULL,
  start_at          BIGINT NOT NULL,
  end_at            BIGINT,
  created_at        BIGINT NOT NULL
);
CREATE INDEX contracts_tenant ON contracts (tenant_id, id);
-- One standing on-demand and one spot contract per tenant and SKU.
CREATE UNIQUE INDEX contracts_standing ON contracts (tenant_id, kind, sku) WHERE kind IN ('on_demand','spot');

CREATE TABLE quotes (
  id         TEXT PRIMARY KEY,
  tenant_id  TEXT NOT NULL REFERENCES tenants(id),
  state      TEXT NOT NULL CHECK (state IN ('open','used','expired')),
  hold       BOOLEAN NOT NULL,
  body       TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX quotes_tenant ON quotes (tenant_id, id);
CREATE INDEX quotes_open ON quotes (state, expires_at);

CREATE TABLE reservations (
  id          TEXT PRIMARY KEY,
  tenant_id   TEXT NOT NULL REFERENCES tenants(id),
  contract_id TEXT NOT NULL REFERENCES contracts(id),
  quote_id    TEXT REFERENCES quotes(id),
  site_id     TEXT NOT NULL REFERENCES sites(id),
  sku         TEXT NOT NULL REFERENCES skus(name),
  class       TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('pending','scheduled','active','ending','ended','cancelled','failed')),
  start_at    BIGINT NOT NULL,
  end_at      BIGINT NOT NULL,
  due_at      BIGINT NOT NULL,
  body        TEXT NOT NULL,
  version     BIGINT NOT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL
);
CREATE INDEX reservations_tenant ON reservations (tenant_id, id);
CREATE INDEX reservations_due ON reservations (due_at);
-- Each quote becomes at most one reservation.
CREATE UNIQUE INDEX reservations_quote ON reservations (quote_id) WHERE quote_id IS NOT NULL;

-- The nodes the calendar chose for a reservation (gpus: JSON list of GPU
-- indices for a partition, empty for the whole node).
CREATE TABLE reservation_nodes (
  reservation_id TEXT NOT NULL REFERENCES reservations(id),
  node_id        TEXT NOT NULL REFERENCES nodes(id),
  gpus           TEXT NOT NULL,
  PRIMARY KEY (reservation_id, node_id)
);

CREATE TABLE allocations (
  id             TEXT PRIMARY KEY,
  reservation_id TEXT NOT NULL REFERENCES reservations(id),
  tenant_id      TEXT NOT NULL REFERENCES tenants(id),
  node_id        TEXT NOT NULL REFERENCES nodes(id),
  gpus           TEXT NOT NULL,
  state          TEXT NOT NULL CHECK (state IN ('bound','provisioning','ready','releasing','ended')),
  body           TEXT NOT NULL,
  due_at         BIGINT NOT NULL,
  version        BIGINT NOT NULL,
  created_at     BIGINT NOT NULL,
  updated_at     BIGINT NOT NULL
);
CREATE INDEX allocations_reservation ON allocations (reservation_id, id);
CREATE INDEX allocations_due ON allocations (state, due_at);
CREATE INDEX allocations_node ON allocations (node_id, state);

-- Invariant 1: a GPU is in at most one non-ended allocation. live is true
-- until the allocation ends; the partial unique index is the guarantee.
CREATE TABLE allocation_gpus (
  allocation_id TEXT NOT NULL REFERENCES allocations(id),
  node_id       TEXT NOT NULL,
  idx           INTEGER NOT NULL,
  live          BOOLEAN NOT NULL,
  PRIMARY KEY (allocation_id, idx)
);
CREATE UNIQUE INDEX allocation_gpus_live ON allocation_gpus (node_id, idx) WHERE live;

-- Admissions of one site and SKU serialize on this row: each bumps the
-- version in its transaction, and a server whose calendar is older than the
-- version it finds reloads it first.
CREATE TABLE calendar_versions (
  site_id TEXT NOT NULL,
  sku     TEXT NOT NULL,
  version BIGINT NOT NULL,
  PRIMARY KEY (site_id, sku)
);

-- Tenant events, numbered in commit order: writers take the next number
-- from event_head, whose row lock serializes them until commit.
CREATE TABLE event_head (
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  seq BIGINT NOT NULL
);
INSERT INTO event_head (id, seq) VALUES (1, 0);
CREATE TABLE events (
  seq       BIGINT PRIMARY KEY,
  id        TEXT NOT NULL UNIQUE,
  tenant_id TEXT,
  kind      TEXT NOT NULL,
  subject   TEXT NOT NULL,
  data      TEXT NOT NULL,
  at        BIGINT NOT NULL
);
CREATE INDEX events_tenant ON events (tenant_id, seq);
