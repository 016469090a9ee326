-- Audit log filters (control-plane/src/audit.rs). Keep in step with
-- ../sqlite/0010_audit_fields.sql.
--
-- A row's source (IP, User-Agent), before/after views and result live in `details`, which the
-- hash chain already covers (audit_chain.rs): no column is added, so rows chained before this
-- migration keep verifying with the one hash formula. These indexes serve the filters of
-- GET /api/audit-logs, each with `id` last for the keyset pagination (ORDER BY id, id < cursor).
-- Text filters compare in code-point order (COLLATE "C"), a prefix as a range, so the
-- expressions below are what the queries use. `at` has its index since 0001.
CREATE INDEX audit_log_actor_idx ON audit_log ((actor COLLATE "C"), id);
CREATE INDEX audit_log_action_idx ON audit_log ((action COLLATE "C"), id);
CREATE INDEX audit_log_target_idx ON audit_log ((target COLLATE "C"), id);
CREATE INDEX audit_log_result_idx ON audit_log ((details->>'result'), id);
