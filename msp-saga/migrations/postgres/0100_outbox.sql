-- Transactional outbox (msp_saga::outbox). Times are Unix microseconds.
CREATE TABLE msp_outbox (
    seq             BIGSERIAL PRIMARY KEY,
    id              UUID NOT NULL UNIQUE,
    topic           TEXT NOT NULL,
    msg_key         TEXT,
    payload         BYTEA NOT NULL,
    headers         TEXT NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    dead_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX msp_outbox_pending ON msp_outbox (seq)
    WHERE sent_at IS NULL AND dead_at IS NULL;
CREATE INDEX msp_outbox_key_pending ON msp_outbox (msg_key, seq)
    WHERE sent_at IS NULL AND dead_at IS NULL;
CREATE INDEX msp_outbox_dead ON msp_outbox (seq) WHERE dead_at IS NOT NULL;
