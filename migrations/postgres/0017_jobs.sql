-- Jobs (issue 12): long operations that run in the background with visible progress, such as
-- recomputing the cost of stored usage after a pricing change. Keep in step with
-- ../sqlite/0017_jobs.sql.
--
-- * `kind` and `params` (JSON) say what to do; `state` is queued, running, succeeded, failed or
--   cancelled; `done`/`total` the progress in the job's own unit (usage records for a
--   recomputation), `message` the latest progress or error text.
-- * Any control-plane replica may run a queued job: it claims it (state running, `owner` and
--   `heartbeat_at` set) in one statement; a running job whose heartbeat is older than a minute
--   (its replica died) is claimed again and resumes from `done`'s checkpoint (`cursor`).
-- * `cancel_requested` asks the runner to stop at its next checkpoint.
CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    kind             TEXT NOT NULL,
    params           JSONB NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    done             BIGINT NOT NULL DEFAULT 0,
    total            BIGINT,
    cursor           TEXT,
    message          TEXT,
    created_by       TEXT NOT NULL,
    owner            TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    heartbeat_at     TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ
);
CREATE INDEX jobs_created_at_idx ON jobs (created_at);
CREATE INDEX jobs_pending_idx ON jobs (state) WHERE state IN ('queued', 'running');
