-- Usage records reported by data planes (one row per inference request). Keep in step with
-- ../sqlite/0002_usage_records.sql.
--
-- Built for volume: rows are only ever inserted (never updated), the table is range-partitioned
-- by day on `started_at` (UTC days, partitions named `usage_records_pYYYYMMDD`), and retention
-- drops whole partitions. The control plane creates each day's partition ahead of time (today
-- and the next two days, re-checked hourly); the DEFAULT partition only catches rows outside the
-- prepared days (clock skew, late resends) and its rows are moved into a day's partition when
-- that partition is created. Nothing on the request path reads this table.
--
-- Idempotency key: (request_id, started_at). A unique constraint on a partitioned table must
-- include the partition key, so `request_id` alone cannot be unique. The data plane resends a
-- record exactly as it first sent it (same request id, same start time), so the pair identifies
-- a record as well as the id does; a separate dedupe table keyed by request id alone would double
-- the write volume and need its own retention. Request ids are random per request, so two
-- different records never share one.
CREATE TABLE usage_records (
    request_id               TEXT NOT NULL,
    virtual_key_id           TEXT NOT NULL,
    provider                 TEXT NOT NULL,
    model_requested          TEXT NOT NULL,
    model_resolved           TEXT NOT NULL,
    provider_key_id          TEXT NOT NULL,
    input_tokens             BIGINT NOT NULL,
    output_tokens            BIGINT NOT NULL,
    cache_read_input_tokens  BIGINT NOT NULL,
    cache_write_input_tokens BIGINT NOT NULL,
    latency_ms               BIGINT NOT NULL,
    time_to_first_token_ms   BIGINT NOT NULL,
    status                   INTEGER NOT NULL,
    error_class              TEXT NOT NULL,
    started_at               TIMESTAMPTZ NOT NULL,
    stream                   BOOLEAN NOT NULL,
    CONSTRAINT usage_records_request_key UNIQUE (request_id, started_at)
) PARTITION BY RANGE (started_at);

CREATE TABLE usage_records_default PARTITION OF usage_records DEFAULT;
