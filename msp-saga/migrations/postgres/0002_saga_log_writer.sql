-- Who wrote each log row and the saga version its write produced, for
-- audits of handovers: the orchestrator whose write added the row (NULL
-- for rows written without one, such as an operator's resolve), and the
-- version (a claim bumps the version without a log row, so a gap in the
-- versions of consecutive rows marks a handover).
ALTER TABLE msp_saga_log ADD COLUMN writer TEXT;
ALTER TABLE msp_saga_log ADD COLUMN version BIGINT;
