-- Every heartbeat a node's agent sent, once: its sequence number and the
-- node's summed GPU energy counter and power (the agent's spool resends
-- what the server missed; the primary key keeps each once).
-- dialect: all
CREATE TABLE node_samples (
  node_id  TEXT NOT NULL REFERENCES nodes(id),
  seq      BIGINT NOT NULL,
  at       BIGINT NOT NULL,
  energy_j BIGINT NOT NULL,
  power_w  DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (node_id, seq)
);
