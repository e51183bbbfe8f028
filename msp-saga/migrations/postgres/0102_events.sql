-- Event store (msp_saga::eventstore). Times are Unix microseconds.
CREATE TABLE msp_events (
    position    BIGSERIAL PRIMARY KEY,
    stream_id   TEXT NOT NULL,
    version     BIGINT NOT NULL CHECK (version > 0),
    event_id    UUID NOT NULL,
    event_type  TEXT NOT NULL,
    payload     JSONB NOT NULL,
    metadata    JSONB NOT NULL DEFAULT '{}',
    recorded_at BIGINT NOT NULL,
    -- the writing transaction (diagnostics; projections rely on snapshots)
    xid         XID8 NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TABLE msp_snapshots (
    stream_id  TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    state      JSONB NOT NULL,
    taken_at   BIGINT NOT NULL
);
CREATE TABLE msp_projection_checkpoints (
    name       TEXT PRIMARY KEY,
    position   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
