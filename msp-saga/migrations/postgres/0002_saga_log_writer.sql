-- The orchestrator whose write added each log row (NULL for rows written
-- without one, such as an operator's resolve), for audits of handovers.
ALTER TABLE msp_saga_log ADD COLUMN writer TEXT;
