-- Content logging (issue 12): request and response bodies of the virtual keys and teams that
-- turn it on. Keep in step with ../sqlite/0018_content_logging.sql.
--
-- * `teams.content_logging`: the team's setting, `{"enabled": bool, "max_body_bytes": n}`, or
--   NULL (off). A key's own setting lives in its `governance` JSON and wins over its team's.
-- * `request_content`: one row per request whose bodies were recorded, written with its usage
--   record in the same transaction (only when that record was stored, so a resent batch writes
--   nothing twice). `request` and `response` are what the data plane kept (each cut to the
--   setting's `max_body_bytes`, credentials masked); `*_bytes` the bodies' whole sizes. Rows
--   older than `--content-retention-days` (default 7) are deleted by the hourly maintenance, on
--   `started_at`, independently of the usage records' own retention.
ALTER TABLE teams ADD COLUMN content_logging JSONB;

CREATE TABLE request_content (
    request_id     TEXT PRIMARY KEY,
    started_at     TIMESTAMPTZ NOT NULL,
    request        BYTEA NOT NULL,
    request_bytes  BIGINT NOT NULL,
    response       BYTEA NOT NULL,
    response_bytes BIGINT NOT NULL
);
CREATE INDEX request_content_started_at_idx ON request_content (started_at);
