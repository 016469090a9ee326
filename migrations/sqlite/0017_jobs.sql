-- Jobs (issue 12): long operations that run in the background with visible progress. Keep in
-- step with ../postgres/0017_jobs.sql (which explains the columns).
CREATE TABLE jobs (
    id               BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    kind             TEXT NOT NULL,
    params           TEXT NOT NULL CHECK (json_valid(params)),
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    done             INTEGER NOT NULL DEFAULT 0,
    total            INTEGER,
    cursor           TEXT,
    message          TEXT,
    created_by       TEXT NOT NULL,
    owner            TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    heartbeat_at     TEXT,
    finished_at      TEXT
);
CREATE INDEX jobs_created_at_idx ON jobs (created_at);
CREATE INDEX jobs_pending_idx ON jobs (state) WHERE state IN ('queued', 'running');
