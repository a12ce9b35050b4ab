-- A lease's epoch grows with every change of holder: the holder's writes
-- check it in their own transaction, so a judge that lost its lease (a
-- pause, a partition) writes nothing.
-- dialect: all
ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
