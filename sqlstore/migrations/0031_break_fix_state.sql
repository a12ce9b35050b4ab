-- A break-fix request's state, so that the reports awaiting an operator can
-- be listed: a report is open until an operator confirms or declines it, or
-- the node's own health fails it; a reboot, GPU reset or replacement is
-- done when made (a reboot's or reset's outcome is its command's).
-- dialect: all
ALTER TABLE break_fix ADD COLUMN state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open','confirmed','declined','done'));
UPDATE break_fix SET state = CASE WHEN kind <> 'report' THEN 'done' WHEN confirmed_at IS NOT NULL THEN 'confirmed' ELSE 'open' END;
CREATE INDEX break_fix_state ON break_fix (state, id);
CREATE INDEX break_fix_tenant ON break_fix (tenant_id, id);
CREATE INDEX break_fix_node ON break_fix (node_id, id);
