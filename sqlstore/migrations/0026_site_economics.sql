-- A site's unit-economics inputs (capex, depreciation, opex, transfer
-- price), declared in its spec: finance's cost per GPU-hour and margins.
-- dialect: all
ALTER TABLE sites ADD COLUMN economics TEXT NOT NULL DEFAULT 'null';
