-- The console's utilization series: GPUs held by class and down, sampled
-- every few seconds, so that the chart survives a restart.
-- dialect: all
CREATE TABLE use_points (
  at   BIGINT PRIMARY KEY,
  body TEXT NOT NULL
);
