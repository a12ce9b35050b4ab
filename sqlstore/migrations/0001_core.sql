-- Core: tenants, tokens, the audit chain and idempotency keys.
-- Times are BIGINT microseconds since the Unix epoch, UTC.
-- dialect: all
CREATE TABLE tenants (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE,
  display_name TEXT NOT NULL DEFAULT '',
  internal     BOOLEAN NOT NULL DEFAULT FALSE,
  created_at   BIGINT NOT NULL
);

CREATE TABLE tokens (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  role       TEXT NOT NULL CHECK (role IN ('operator-admin','operator-viewer','tenant-admin','tenant-member','agent')),
  tenant_id  TEXT REFERENCES tenants(id),
  hash       TEXT NOT NULL UNIQUE,
  hint       TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at BIGINT,
  -- a tenant role always names its tenant; an operator role never does
  CHECK ((role IN ('tenant-admin','tenant-member')) = (tenant_id IS NOT NULL))
);
CREATE INDEX tokens_tenant ON tokens (tenant_id, id);

-- audit_head is the chain's tip, one row; appending updates it in the same
-- transaction, which serializes appends on both engines.
CREATE TABLE audit_head (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  seq  BIGINT NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

CREATE TABLE audit (
  seq          BIGINT PRIMARY KEY,
  id           TEXT NOT NULL UNIQUE,
  at           BIGINT NOT NULL,
  actor        TEXT NOT NULL,
  actor_role   TEXT NOT NULL,
  actor_tenant TEXT NOT NULL,
  tenant       TEXT NOT NULL,
  action       TEXT NOT NULL,
  object       TEXT NOT NULL,
  status       INTEGER NOT NULL,
  result       TEXT NOT NULL CHECK (result IN ('ok','denied','failed')),
  request_id   TEXT NOT NULL,
  source       TEXT NOT NULL,
  prev_hash    TEXT NOT NULL,
  hash         TEXT NOT NULL
);
CREATE INDEX audit_tenant ON audit (tenant, seq);
CREATE INDEX audit_actor_tenant ON audit (actor_tenant, seq);

-- One row per (scope, key): in_flight while the first request runs, done
-- with the stored response after. Kept at least 7 days.
CREATE TABLE idempotency_keys (
  scope        TEXT NOT NULL,
  key          TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('in_flight','done')),
  status       INTEGER NOT NULL DEFAULT 0,
  content_type TEXT NOT NULL DEFAULT '',
  body         TEXT NOT NULL DEFAULT '',
  created_at   BIGINT NOT NULL,
  locked_until BIGINT NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at);

-- dialect: sqlite
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;

-- dialect: postgres
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit is append-only';
END
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
