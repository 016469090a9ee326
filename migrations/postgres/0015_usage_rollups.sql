-- Spend rollups (issue 12). Keep in step with ../sqlite/0015_usage_rollups.sql.
--
-- Two tables of pre-summed usage, one row per bucket (UTC hour, UTC day) and billing key:
-- the virtual key, the team, customer and user the request was billed to, the provider and the
-- resolved model. `GET /api/spend` reads them instead of `usage_records`: a month is ~30 daily
-- rows per key and model however many requests there were. Hourly rows barely compress a
-- quiet key (a few requests an hour), so month-long and day-by-day reports read the daily table
-- and only hour-by-hour reports read the hourly one.
--
-- Kept up to date as usage arrives: the transaction that inserts a batch of usage records adds
-- the rows it actually inserted (not those skipped as already stored, so a resent batch counts
-- once) to both tables, with `ON CONFLICT ... DO UPDATE SET n = n + EXCLUDED.n`. Each
-- transaction upserts its buckets in one fixed order (sorted by the whole key in the control
-- plane) after all its raw inserts, so concurrent replicas wait on each other's bucket rows but
-- never deadlock.
--
-- No-owner sentinel: `team_id`, `customer_id` and `user_id` are the nil UUID (all zeros) when
-- the request was billed to no team/customer/user (NULL in `usage_records`), so the bucket key
-- can be a plain PRIMARY KEY (NULLs are distinct in a unique index; NULLS NOT DISTINCT needs
-- PostgreSQL 15 and SQLite has nothing like it) and one rule serves both backends. Ids are
-- random (v4/v7), never nil; reads turn the nil UUID back into "none".
--
-- `requests`: records that are not refusals by limits (tollgate_proto::usage::refusal::BY_LIMITS,
-- the list sql::USAGE_IN_RANGE uses); `refused_requests`: those refusals; `error_requests`:
-- non-refused records with an error class. `unpriced_requests`: records without a cost (as
-- usage_by_virtual_key counts them). Token sums are over every record.
--
-- Retention: the rollups outlive the raw records (`--spend-retention-days`, default 400,
-- against `--usage-retention-days`, default 90); old buckets are deleted by the hourly
-- maintenance.
CREATE TABLE usage_rollup_hourly (
    bucket                   TIMESTAMPTZ NOT NULL,
    virtual_key_id           TEXT NOT NULL,
    team_id                  UUID NOT NULL,
    customer_id              UUID NOT NULL,
    user_id                  UUID NOT NULL,
    provider                 TEXT NOT NULL,
    model                    TEXT NOT NULL,
    requests                 BIGINT NOT NULL,
    refused_requests         BIGINT NOT NULL,
    error_requests           BIGINT NOT NULL,
    input_tokens             BIGINT NOT NULL,
    output_tokens            BIGINT NOT NULL,
    cache_read_input_tokens  BIGINT NOT NULL,
    cache_write_input_tokens BIGINT NOT NULL,
    cost_nano_usd            BIGINT NOT NULL,
    unpriced_requests        BIGINT NOT NULL,
    PRIMARY KEY (bucket, virtual_key_id, team_id, customer_id, user_id, provider, model)
);

CREATE TABLE usage_rollup_daily (LIKE usage_rollup_hourly INCLUDING ALL);

-- Scoped reports (one team, one key) over a range of buckets.
CREATE INDEX usage_rollup_hourly_team_idx ON usage_rollup_hourly (team_id, bucket);
CREATE INDEX usage_rollup_hourly_key_idx ON usage_rollup_hourly (virtual_key_id, bucket);
CREATE INDEX usage_rollup_daily_team_idx ON usage_rollup_daily (team_id, bucket);
CREATE INDEX usage_rollup_daily_key_idx ON usage_rollup_daily (virtual_key_id, bucket);

-- Backfill from the records already stored (the same sums the control plane adds per batch).
INSERT INTO usage_rollup_hourly
SELECT date_trunc('hour', started_at, 'UTC'), virtual_key_id,
       COALESCE(team_id, '00000000-0000-0000-0000-000000000000'),
       COALESCE(customer_id, '00000000-0000-0000-0000-000000000000'),
       COALESCE(user_id, '00000000-0000-0000-0000-000000000000'),
       provider, model_resolved,
       COUNT(*) FILTER (WHERE error_class NOT IN ('budget_exhausted', 'rate_limited',
           'concurrency_limited', 'unpriced_model', 'allowance_moving')),
       COUNT(*) FILTER (WHERE error_class IN ('budget_exhausted', 'rate_limited',
           'concurrency_limited', 'unpriced_model', 'allowance_moving')),
       COUNT(*) FILTER (WHERE error_class <> '' AND error_class NOT IN ('budget_exhausted',
           'rate_limited', 'concurrency_limited', 'unpriced_model', 'allowance_moving')),
       SUM(input_tokens), SUM(output_tokens), SUM(cache_read_input_tokens),
       SUM(cache_write_input_tokens), COALESCE(SUM(cost_nano_usd), 0),
       COUNT(*) - COUNT(cost_nano_usd)
FROM usage_records
GROUP BY 1, 2, 3, 4, 5, 6, 7;

INSERT INTO usage_rollup_daily
SELECT date_trunc('day', bucket, 'UTC'), virtual_key_id, team_id, customer_id, user_id,
       provider, model, SUM(requests), SUM(refused_requests), SUM(error_requests),
       SUM(input_tokens), SUM(output_tokens), SUM(cache_read_input_tokens),
       SUM(cache_write_input_tokens), SUM(cost_nano_usd), SUM(unpriced_requests)
FROM usage_rollup_hourly
GROUP BY 1, 2, 3, 4, 5, 6, 7;
