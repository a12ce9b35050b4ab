-- A site's operating settings (notices), JSON; null takes the defaults.
-- dialect: all
ALTER TABLE sites ADD COLUMN policy TEXT NOT NULL DEFAULT 'null';
