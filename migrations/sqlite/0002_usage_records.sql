-- Usage records reported by data planes (one row per inference request). Keep in step with
-- ../postgres/0002_usage_records.sql. SQLite serves a single all-in-one process, so this is a
-- plain table; storage is idempotent on the request id (INSERT OR IGNORE). Retention deletes
-- rows by `started_at`, fixed-width UTC text (`YYYY-MM-DDTHH:MM:SS.mmmZ`) that sorts
-- chronologically.
CREATE TABLE usage_records (
    request_id               TEXT NOT NULL CONSTRAINT usage_records_request_id_key UNIQUE,
    virtual_key_id           TEXT NOT NULL,
    provider                 TEXT NOT NULL,
    model_requested          TEXT NOT NULL,
    model_resolved           TEXT NOT NULL,
    provider_key_id          TEXT NOT NULL,
    input_tokens             INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    cache_read_input_tokens  INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    latency_ms               INTEGER NOT NULL,
    time_to_first_token_ms   INTEGER NOT NULL,
    status                   INTEGER NOT NULL,
    error_class              TEXT NOT NULL,
    started_at               TEXT NOT NULL,
    stream                   BOOLEAN NOT NULL
);
CREATE INDEX usage_records_started_at_idx ON usage_records (started_at);
