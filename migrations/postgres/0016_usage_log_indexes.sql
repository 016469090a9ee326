-- Indexes for request logs (issue 12). Keep in step with ../sqlite/0016_usage_log_indexes.sql.
--
-- `GET /api/logs` asks for the newest rows of a time window, often of one key, team or user.
-- Without these, every page reads and sorts the whole window (the only index of a partition,
-- the idempotency key, starts with the request id): 0.1-0.6 s for a day and ~20 s for a month
-- at 10 million rows a month (BENCHMARKS.md §10). With them the first
-- page reads its 100 rows newest first: each index ends with the page order
-- (`started_at`, `request_id`), so no sort is needed (with `started_at` alone every matching row
-- of the window was still read and sorted). Created on the partitioned parent, so every partition
-- (and every partition made later) gets its own. Status, model, provider and cost filters ride
-- on the `started_at` index (the newest rows are read until a page is full).
CREATE INDEX usage_records_started_at_idx ON usage_records (started_at, request_id);
CREATE INDEX usage_records_key_started_idx ON usage_records (virtual_key_id, started_at, request_id);
CREATE INDEX usage_records_team_started_idx ON usage_records (team_id, started_at, request_id);
CREATE INDEX usage_records_user_started_idx ON usage_records (user_id, started_at, request_id);
