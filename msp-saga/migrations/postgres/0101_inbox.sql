-- Idempotent inbox (msp_saga::inbox). Times are Unix microseconds.
CREATE TABLE msp_inbox (
    consumer     TEXT NOT NULL,
    message_id   UUID NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX msp_inbox_processed_at ON msp_inbox (processed_at);
