-- Fencing of outbox claims (msp_saga::outbox): every claim round writes a
-- fresh token; renewing, marking sent, recording a failure and releasing
-- apply only while the row still carries the writer's token, so a relay
-- whose rows were taken over can no longer change them.
ALTER TABLE msp_outbox ADD COLUMN claim_token BLOB;
-- The name of the relay that holds (or, once sent, sent) the row.
ALTER TABLE msp_outbox ADD COLUMN claimed_by TEXT;
