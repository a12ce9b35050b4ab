-- A contract's reservations (a lease's phases) are read together.
-- dialect: all
CREATE INDEX reservations_contract ON reservations (contract_id, start_at);
