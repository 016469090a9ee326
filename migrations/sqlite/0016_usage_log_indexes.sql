-- Indexes for request logs (issue 12). Keep in step with ../postgres/0016_usage_log_indexes.sql:
-- the newest rows of one key, team or user in a time window without reading the whole window
-- (`started_at` alone is indexed since migration 0002).
CREATE INDEX usage_records_key_started_idx ON usage_records (virtual_key_id, started_at, request_id);
CREATE INDEX usage_records_team_started_idx ON usage_records (team_id, started_at, request_id);
CREATE INDEX usage_records_user_started_idx ON usage_records (user_id, started_at, request_id);
