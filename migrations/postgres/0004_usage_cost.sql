-- Cost on usage records (issue 8). Keep in step with ../sqlite/0004_usage_cost.sql.
-- `cache_write_1h_input_tokens`: the part of `cache_write_input_tokens` written with the 1-hour
-- TTL. `cost_nano_usd`: what the request cost in 10^-9 USD, priced by the data plane; NULL when
-- tokens were used on a model without a price ("unpriced", never read as $0), and on rows
-- stored before this migration (they were never priced). Adding columns to the partitioned
-- parent adds them to every partition; partitions made later copy the parent.
ALTER TABLE usage_records
    ADD COLUMN cache_write_1h_input_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN cost_nano_usd BIGINT;
