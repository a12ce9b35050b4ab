-- The GPUs' mean utilization in each node-minute (summed per report, as
-- power is): how busy committed GPU-hours actually were.
-- dialect: all
ALTER TABLE node_minutes ADD COLUMN util_sum DOUBLE PRECISION NOT NULL DEFAULT 0;
