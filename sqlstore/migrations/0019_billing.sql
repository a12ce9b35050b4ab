-- Metering and invoicing: usage records per (allocation, UTC hour), the
-- spot price series, billing profiles, closed periods, gapless invoice and
-- credit note numbers, and finalized invoices, which never change.
-- dialect: all
CREATE TABLE usage_records (
  id             TEXT PRIMARY KEY,
  allocation_id  TEXT NOT NULL,
  hour           BIGINT NOT NULL,
  rev            INTEGER NOT NULL,
  reservation_id TEXT NOT NULL,
  contract_id    TEXT NOT NULL,
  tenant_id      TEXT NOT NULL REFERENCES tenants(id),
  class          TEXT NOT NULL,
  sku            TEXT NOT NULL,
  site_id        TEXT NOT NULL,
  node_id        TEXT NOT NULL,
  start_at       BIGINT NOT NULL,
  end_at         BIGINT NOT NULL,
  gpus           INTEGER NOT NULL,
  gpu_seconds    BIGINT NOT NULL,
  gpu_energy_j   BIGINT NOT NULL,
  energy_j       BIGINT NOT NULL,
  energy_source  TEXT NOT NULL CHECK (energy_source IN ('node_oob','estimated')),
  invoice_id     TEXT,
  derived_at     BIGINT NOT NULL
);
CREATE INDEX usage_records_hour ON usage_records (hour);
CREATE INDEX usage_records_tenant ON usage_records (tenant_id, hour);
-- The id, a hash of the allocation, the hour and the revision, keeps each
-- record once. An invoice line's records (lineage) are found through the
-- tenant's hours: marking a month's records invoiced updates no index.
-- The meter finds allocations that ended since a time.
CREATE INDEX allocations_ended ON allocations (state, updated_at);
CREATE INDEX energy_readings_at ON energy_readings (at);

CREATE TABLE meter_state (
  id      INTEGER PRIMARY KEY CHECK (id = 1),
  through BIGINT NOT NULL
);

CREATE TABLE spot_prices (
  site_id     TEXT NOT NULL,
  sku         TEXT NOT NULL,
  at          BIGINT NOT NULL,
  rate_micros BIGINT NOT NULL CHECK (rate_micros >= 0),
  PRIMARY KEY (site_id, sku, at)
);

CREATE TABLE billing_seller (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  body TEXT NOT NULL
);

CREATE TABLE billing_profiles (
  tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
  body      TEXT NOT NULL
);

CREATE TABLE billing_periods (
  period    TEXT PRIMARY KEY,
  start_at  BIGINT NOT NULL,
  end_at    BIGINT NOT NULL,
  closed_at BIGINT NOT NULL,
  closed_by TEXT NOT NULL,
  invoices  INTEGER NOT NULL
);

-- The next number of each series (invoices, credit notes): taking one
-- updates the row in the closing transaction, so numbers have no gaps.
CREATE TABLE invoice_series (
  series TEXT PRIMARY KEY,
  next   BIGINT NOT NULL
);

CREATE TABLE invoices (
  id            TEXT PRIMARY KEY,
  number        TEXT NOT NULL UNIQUE,
  kind          TEXT NOT NULL CHECK (kind IN ('invoice','credit_note')),
  tenant_id     TEXT NOT NULL REFERENCES tenants(id),
  period        TEXT NOT NULL,
  currency      TEXT NOT NULL,
  refers_to     TEXT REFERENCES invoices(id),
  total_micros  BIGINT NOT NULL,
  issued_at     BIGINT NOT NULL,
  body          TEXT NOT NULL
);
CREATE INDEX invoices_tenant ON invoices (tenant_id, id);
CREATE INDEX invoices_period ON invoices (period, id);
CREATE INDEX invoices_refers ON invoices (refers_to);

-- Commitment charges (one per contract and month) are billed once.
CREATE TABLE invoice_charges (
  charge_key TEXT PRIMARY KEY,
  invoice_id TEXT NOT NULL REFERENCES invoices(id)
);

-- dialect: sqlite
CREATE TRIGGER invoices_no_update BEFORE UPDATE ON invoices
BEGIN SELECT RAISE(ABORT, 'a finalized invoice never changes'); END;
CREATE TRIGGER invoices_no_delete BEFORE DELETE ON invoices
BEGIN SELECT RAISE(ABORT, 'a finalized invoice never changes'); END;
CREATE TRIGGER usage_invoiced_no_update BEFORE UPDATE ON usage_records
WHEN OLD.invoice_id IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'an invoiced usage record never changes'); END;
CREATE TRIGGER usage_invoiced_no_delete BEFORE DELETE ON usage_records
WHEN OLD.invoice_id IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'an invoiced usage record never changes'); END;

-- dialect: postgres
CREATE FUNCTION invoices_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'a finalized invoice never changes';
END
$$;
CREATE TRIGGER invoices_no_change BEFORE UPDATE OR DELETE ON invoices
  FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
CREATE FUNCTION usage_invoiced_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.invoice_id IS NOT NULL THEN
    RAISE EXCEPTION 'an invoiced usage record never changes';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER usage_invoiced_no_change BEFORE UPDATE OR DELETE ON usage_records
  FOR EACH ROW EXECUTE FUNCTION usage_invoiced_immutable();
