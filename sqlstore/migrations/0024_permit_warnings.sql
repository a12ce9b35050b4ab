-- Permit warnings: a limit of a site's air permit its forecast at the
-- current draw crosses within the site's warning days; one a site, year
-- and limit (the first raises an operator event).
-- dialect: all
CREATE TABLE permit_warnings (
  site_id    TEXT NOT NULL REFERENCES sites(id),
  year       INTEGER NOT NULL,
  limit_name TEXT NOT NULL,
  at         BIGINT NOT NULL,
  body       TEXT NOT NULL,
  PRIMARY KEY (site_id, year, limit_name)
);
