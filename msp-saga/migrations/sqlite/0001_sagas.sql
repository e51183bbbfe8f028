-- msp-saga: saga instances and their step logs (SQLite).
-- Times are milliseconds since the Unix epoch, written by the orchestrator.
CREATE TABLE msp_sagas (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    data        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    owner       TEXT,
    lease_until INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX msp_sagas_claimable ON msp_sagas (due_at) WHERE state IN ('running', 'compensating');
CREATE INDEX msp_sagas_by_state ON msp_sagas (state, created_at);

CREATE TABLE msp_saga_log (
    saga_id TEXT NOT NULL REFERENCES msp_sagas (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    step    TEXT,
    body    TEXT NOT NULL,
    PRIMARY KEY (saga_id, seq)
) WITHOUT ROWID;
