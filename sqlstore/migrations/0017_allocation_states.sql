-- Settling a reservation asks whether any of its allocations is still on
-- its way (bound, provisioning, releasing): an index seek per question, not
-- a count of every allocation of a 6,144-node lease at each one that
-- becomes ready.
-- dialect: all
CREATE INDEX allocations_reservation_state ON allocations (reservation_id, state);
