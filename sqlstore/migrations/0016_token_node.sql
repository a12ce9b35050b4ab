-- A node's agent credential is looked up by node at every join and re-key:
-- without an index that is a scan of every token, per join.
-- dialect: all
CREATE INDEX tokens_node ON tokens (node_id) WHERE node_id IS NOT NULL;
