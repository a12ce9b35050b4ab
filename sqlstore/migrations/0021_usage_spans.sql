-- A month closes from spans, not from hourly records: one row per
-- (allocation, UTC month) summing the allocation's records (revision 0) of
-- the month's hours, kept as the meter writes them. Rating an allocation's
-- span gives the same amounts as rating its hours (the hours tile the
-- span); a span whose hours do not tile it (gpus -1, or seconds that do
-- not add up) is rated from its hours.
--
-- Closing a month no longer marks its records one by one: a record of
-- revision 0 of an hour before the end of the latest closed month is
-- closed (it is on that month's invoice, or internal work, never
-- invoiced) and never changes; a revision found later (rev > 0) is marked
-- with the invoice that bills it.
-- dialect: all
-- A record carries its reservation's size (the price book's volume tier)
-- as the meter found it: per-second rating reads no reservations.
ALTER TABLE usage_records ADD COLUMN rsv_gpus INTEGER NOT NULL DEFAULT 0;
-- A reservation's GPUs beside its body, for the meter to read.
ALTER TABLE reservations ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0;

-- dialect: sqlite
-- Clustered by tenant and month: a close reads each tenant's spans as one
-- range.
CREATE TABLE usage_spans (
  tenant_id      TEXT NOT NULL REFERENCES tenants(id),
  month          BIGINT NOT NULL,
  allocation_id  TEXT NOT NULL,
  reservation_id TEXT NOT NULL,
  contract_id    TEXT NOT NULL,
  class          TEXT NOT NULL,
  sku            TEXT NOT NULL,
  site_id        TEXT NOT NULL,
  node_id        TEXT NOT NULL,
  gpus           INTEGER NOT NULL,
  rsv_gpus       INTEGER NOT NULL,
  start_at       BIGINT NOT NULL,
  end_at         BIGINT NOT NULL,
  gpu_seconds    BIGINT NOT NULL,
  gpu_energy_j   BIGINT NOT NULL,
  energy_j       BIGINT NOT NULL,
  sources        INTEGER NOT NULL,
  records        INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, month, allocation_id)
) WITHOUT ROWID;

-- dialect: postgres
CREATE TABLE usage_spans (
  tenant_id      TEXT NOT NULL REFERENCES tenants(id),
  month          BIGINT NOT NULL,
  allocation_id  TEXT NOT NULL,
  reservation_id TEXT NOT NULL,
  contract_id    TEXT NOT NULL,
  class          TEXT NOT NULL,
  sku            TEXT NOT NULL,
  site_id        TEXT NOT NULL,
  node_id        TEXT NOT NULL,
  gpus           INTEGER NOT NULL,
  rsv_gpus       INTEGER NOT NULL,
  start_at       BIGINT NOT NULL,
  end_at         BIGINT NOT NULL,
  gpu_seconds    BIGINT NOT NULL,
  gpu_energy_j   BIGINT NOT NULL,
  energy_j       BIGINT NOT NULL,
  sources        INTEGER NOT NULL,
  records        INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, month, allocation_id)
);

-- dialect: all
-- An allocation's hours (a span recomputed, a line's lineage).
CREATE INDEX usage_records_allocation ON usage_records (allocation_id, hour);
-- Revisions not yet invoiced: what the next close bills as adjustments.
CREATE INDEX usage_records_open ON usage_records (tenant_id, hour) WHERE invoice_id IS NULL AND rev > 0;

-- dialect: sqlite
-- The triggers change (below); the backfill gives closed records their
-- reservation's size, the one column they gain.
DROP TRIGGER usage_invoiced_no_update;
DROP TRIGGER usage_invoiced_no_delete;
UPDATE reservations SET gpus = json_extract(body, '$.shape.gpus');
UPDATE usage_records SET rsv_gpus = COALESCE((SELECT gpus FROM reservations r WHERE r.id = usage_records.reservation_id), 0);
INSERT INTO usage_spans (allocation_id, month, tenant_id, reservation_id, contract_id, class, sku, site_id, node_id, gpus, rsv_gpus, start_at, end_at, gpu_seconds, gpu_energy_j, energy_j, sources, records)
SELECT allocation_id, CAST(strftime('%s', hour / 1000000, 'unixepoch', 'start of month') AS INTEGER) * 1000000,
  MIN(tenant_id), MIN(reservation_id), MIN(contract_id), MIN(class), MIN(sku), MIN(site_id), MIN(node_id),
  CASE WHEN MIN(gpus) = MAX(gpus) AND MIN(rsv_gpus) = MAX(rsv_gpus) THEN MIN(gpus) ELSE -1 END, MAX(rsv_gpus), MIN(start_at), MAX(end_at),
  SUM(gpu_seconds), SUM(gpu_energy_j), SUM(energy_j),
  MAX(CASE energy_source WHEN 'node_oob' THEN 1 ELSE 0 END) | MAX(CASE energy_source WHEN 'estimated' THEN 2 ELSE 0 END), COUNT(*)
FROM usage_records WHERE rev = 0
GROUP BY allocation_id, CAST(strftime('%s', hour / 1000000, 'unixepoch', 'start of month') AS INTEGER);

CREATE TRIGGER usage_closed_no_update BEFORE UPDATE ON usage_records
WHEN OLD.invoice_id IS NOT NULL OR (OLD.rev = 0 AND OLD.hour < (SELECT COALESCE(MAX(end_at), 0) FROM billing_periods))
BEGIN SELECT RAISE(ABORT, 'an invoiced usage record never changes'); END;
CREATE TRIGGER usage_closed_no_delete BEFORE DELETE ON usage_records
WHEN OLD.invoice_id IS NOT NULL OR (OLD.rev = 0 AND OLD.hour < (SELECT COALESCE(MAX(end_at), 0) FROM billing_periods))
BEGIN SELECT RAISE(ABORT, 'an invoiced usage record never changes'); END;
CREATE TRIGGER usage_spans_closed_no_insert BEFORE INSERT ON usage_spans
WHEN NEW.month < (SELECT COALESCE(MAX(end_at), 0) FROM billing_periods)
BEGIN SELECT RAISE(ABORT, 'a closed month''s usage never changes'); END;
CREATE TRIGGER usage_spans_closed_no_update BEFORE UPDATE ON usage_spans
WHEN OLD.month < (SELECT COALESCE(MAX(end_at), 0) FROM billing_periods)
BEGIN SELECT RAISE(ABORT, 'a closed month''s usage never changes'); END;
CREATE TRIGGER usage_spans_closed_no_delete BEFORE DELETE ON usage_spans
WHEN OLD.month < (SELECT COALESCE(MAX(end_at), 0) FROM billing_periods)
BEGIN SELECT RAISE(ABORT, 'a closed month''s usage never changes'); END;

-- dialect: postgres
DROP TRIGGER usage_invoiced_no_change ON usage_records;
UPDATE reservations SET gpus = (body::jsonb #>> '{shape,gpus}')::int;
UPDATE usage_records u SET rsv_gpus = r.gpus FROM reservations r WHERE r.id = u.reservation_id;
INSERT INTO usage_spans (allocation_id, month, tenant_id, reservation_id, contract_id, class, sku, site_id, node_id, gpus, rsv_gpus, start_at, end_at, gpu_seconds, gpu_energy_j, energy_j, sources, records)
SELECT allocation_id, m,
  MIN(tenant_id), MIN(reservation_id), MIN(contract_id), MIN(class), MIN(sku), MIN(site_id), MIN(node_id),
  CASE WHEN MIN(gpus) = MAX(gpus) AND MIN(rsv_gpus) = MAX(rsv_gpus) THEN MIN(gpus) ELSE -1 END, MAX(rsv_gpus), MIN(start_at), MAX(end_at),
  SUM(gpu_seconds), SUM(gpu_energy_j), SUM(energy_j),
  MAX(CASE energy_source WHEN 'node_oob' THEN 1 ELSE 0 END) | MAX(CASE energy_source WHEN 'estimated' THEN 2 ELSE 0 END), COUNT(*)
FROM (SELECT *, (EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(hour / 1000000) AT TIME ZONE 'UTC'))::bigint * 1000000) AS m
      FROM usage_records WHERE rev = 0) r
GROUP BY allocation_id, m;

CREATE OR REPLACE FUNCTION usage_invoiced_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.invoice_id IS NOT NULL OR (OLD.rev = 0 AND OLD.hour < (SELECT COALESCE(MAX(end_at), 0) FROM billing_periods)) THEN
    RAISE EXCEPTION 'an invoiced usage record never changes';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER usage_closed_no_change BEFORE UPDATE OR DELETE ON usage_records
  FOR EACH ROW EXECUTE FUNCTION usage_invoiced_immutable();
CREATE FUNCTION usage_spans_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.month < (SELECT COALESCE(MAX(end_at), 0) FROM billing_periods) THEN
      RAISE EXCEPTION 'a closed month''s usage never changes';
    END IF;
    RETURN NEW;
  END IF;
  IF OLD.month < (SELECT COALESCE(MAX(end_at), 0) FROM billing_periods) THEN
    RAISE EXCEPTION 'a closed month''s usage never changes';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER usage_spans_closed_no_change BEFORE INSERT OR UPDATE OR DELETE ON usage_spans
  FOR EACH ROW EXECUTE FUNCTION usage_spans_immutable();
