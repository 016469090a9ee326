-- The fallback trail on usage records (issue 9). Keep in step with ../sqlite/0007_usage_attempts.sql.
-- `fallback_index`: which entry of the request's fallback list served (0: the model asked for).
-- `attempts`: the attempts given up before it, as a JSON array of
-- {"provider", "model", "provider_key_id", "class", "status", "latency_ms"}; NULL when none.
ALTER TABLE usage_records
    ADD COLUMN fallback_index INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN attempts TEXT;
