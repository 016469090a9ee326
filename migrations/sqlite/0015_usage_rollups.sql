-- Spend rollups (issue 12). Keep in step with ../postgres/0015_usage_rollups.sql, which
-- explains the tables: hourly and daily sums per bucket and billing key, added to in the
-- transaction that inserts the usage records (only the rows actually inserted), the nil id
-- (16 zero bytes) for "no team/customer/user" so the key can be the primary key.
-- `bucket` is fixed-width UTC text like `usage_records.started_at`
-- (`2026-01-15T10:00:00.000Z`), so text order is time order.
CREATE TABLE usage_rollup_hourly (
    bucket                   TEXT NOT NULL,
    virtual_key_id           TEXT NOT NULL,
    team_id                  BLOB NOT NULL,
    customer_id              BLOB NOT NULL,
    user_id                  BLOB NOT NULL,
    provider                 TEXT NOT NULL,
    model                    TEXT NOT NULL,
    requests                 INTEGER NOT NULL,
    refused_requests         INTEGER NOT NULL,
    error_requests           INTEGER NOT NULL,
    input_tokens             INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    cache_read_input_tokens  INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    cost_nano_usd            INTEGER NOT NULL,
    unpriced_requests        INTEGER NOT NULL,
    PRIMARY KEY (bucket, virtual_key_id, team_id, customer_id, user_id, provider, model)
);

CREATE TABLE usage_rollup_daily (
    bucket                   TEXT NOT NULL,
    virtual_key_id           TEXT NOT NULL,
    team_id                  BLOB NOT NULL,
    customer_id              BLOB NOT NULL,
    user_id                  BLOB NOT NULL,
    provider                 TEXT NOT NULL,
    model                    TEXT NOT NULL,
    requests                 INTEGER NOT NULL,
    refused_requests         INTEGER NOT NULL,
    error_requests           INTEGER NOT NULL,
    input_tokens             INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    cache_read_input_tokens  INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    cost_nano_usd            INTEGER NOT NULL,
    unpriced_requests        INTEGER NOT NULL,
    PRIMARY KEY (bucket, virtual_key_id, team_id, customer_id, user_id, provider, model)
);

CREATE INDEX usage_rollup_hourly_team_idx ON usage_rollup_hourly (team_id, bucket);
CREATE INDEX usage_rollup_hourly_key_idx ON usage_rollup_hourly (virtual_key_id, bucket);
CREATE INDEX usage_rollup_daily_team_idx ON usage_rollup_daily (team_id, bucket);
CREATE INDEX usage_rollup_daily_key_idx ON usage_rollup_daily (virtual_key_id, bucket);

-- Backfill from the records already stored.
INSERT INTO usage_rollup_hourly
SELECT substr(started_at, 1, 13) || ':00:00.000Z', virtual_key_id,
       COALESCE(team_id, zeroblob(16)), COALESCE(customer_id, zeroblob(16)),
       COALESCE(user_id, zeroblob(16)), provider, model_resolved,
       SUM(error_class NOT IN ('budget_exhausted', 'rate_limited', 'concurrency_limited',
           'unpriced_model', 'allowance_moving')),
       SUM(error_class IN ('budget_exhausted', 'rate_limited', 'concurrency_limited',
           'unpriced_model', 'allowance_moving')),
       SUM(error_class <> '' AND error_class NOT IN ('budget_exhausted', 'rate_limited',
           'concurrency_limited', 'unpriced_model', 'allowance_moving')),
       SUM(input_tokens), SUM(output_tokens), SUM(cache_read_input_tokens),
       SUM(cache_write_input_tokens), COALESCE(SUM(cost_nano_usd), 0),
       COUNT(*) - COUNT(cost_nano_usd)
FROM usage_records
GROUP BY 1, 2, 3, 4, 5, 6, 7;

INSERT INTO usage_rollup_daily
SELECT substr(bucket, 1, 10) || 'T00:00:00.000Z', virtual_key_id, team_id, customer_id,
       user_id, provider, model, SUM(requests), SUM(refused_requests), SUM(error_requests),
       SUM(input_tokens), SUM(output_tokens), SUM(cache_read_input_tokens),
       SUM(cache_write_input_tokens), SUM(cost_nano_usd), SUM(unpriced_requests)
FROM usage_rollup_hourly
GROUP BY 1, 2, 3, 4, 5, 6, 7;
