-- Event store (msp_saga::eventstore). Times are Unix microseconds.
-- AUTOINCREMENT: a position is never reused, even after the newest events of
-- a rolled-back transaction; SQLite's single writer commits positions in order.
CREATE TABLE msp_events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id   TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    event_id    BLOB NOT NULL,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    metadata    TEXT NOT NULL DEFAULT '{}',
    recorded_at INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TABLE msp_snapshots (
    stream_id  TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL,
    taken_at   INTEGER NOT NULL
);
CREATE TABLE msp_projection_checkpoints (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
