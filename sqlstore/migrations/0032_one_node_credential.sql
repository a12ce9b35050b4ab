-- A node has one live agent credential: two agents joining as the same
-- node at once (each with a join token) cannot both get one. Should two be
-- live already, the older ones are revoked first (token ids grow with
-- time).
-- dialect: all
UPDATE tokens SET revoked_at = created_at
WHERE node_id IS NOT NULL AND revoked_at IS NULL
  AND id <> (SELECT MAX(t.id) FROM tokens t WHERE t.node_id = tokens.node_id AND t.revoked_at IS NULL);
CREATE UNIQUE INDEX tokens_node_live ON tokens (node_id) WHERE node_id IS NOT NULL AND revoked_at IS NULL;
