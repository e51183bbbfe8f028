-- Idempotent inbox (msp_saga::inbox). Times are Unix microseconds.
CREATE TABLE msp_inbox (
    consumer     TEXT NOT NULL,
    message_id   BLOB NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX msp_inbox_processed_at ON msp_inbox (processed_at);
