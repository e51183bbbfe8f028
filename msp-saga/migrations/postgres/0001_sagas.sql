-- msp-saga: saga instances and their step logs (PostgreSQL).
-- Times are milliseconds since the Unix epoch, written by the orchestrators.
CREATE TABLE msp_sagas (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    data        JSONB NOT NULL,
    version     BIGINT NOT NULL,
    owner       TEXT,
    lease_until BIGINT NOT NULL,
    due_at      BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Claims scan only the active sagas, in due order.
CREATE INDEX msp_sagas_claimable ON msp_sagas (due_at) WHERE state IN ('running', 'compensating');
-- The query API lists sagas by state, oldest first.
CREATE INDEX msp_sagas_by_state ON msp_sagas (state, created_at);

CREATE TABLE msp_saga_log (
    saga_id UUID NOT NULL REFERENCES msp_sagas (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    step    TEXT,
    body    JSONB NOT NULL,
    PRIMARY KEY (saga_id, seq)
);
