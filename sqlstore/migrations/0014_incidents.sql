-- Incidents for operators (domains gone silent), kept so that every server
-- shows them and a new judge carries them on.
-- dialect: all
CREATE TABLE incidents (
  id        TEXT PRIMARY KEY,
  closed    BOOLEAN NOT NULL,
  opened_at BIGINT NOT NULL,
  body      TEXT NOT NULL
);
CREATE INDEX incidents_open ON incidents (closed, opened_at);
