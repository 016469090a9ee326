-- Audit log filters (control-plane/src/audit.rs). Keep in step with
-- ../postgres/0010_audit_fields.sql.
--
-- A row's source (IP, User-Agent), before/after views and result live in `details`, which the
-- hash chain already covers (audit_chain.rs): no column is added, so rows chained before this
-- migration keep verifying with the one hash formula. These indexes serve the filters of
-- GET /api/audit-logs, each with `id` last for the keyset pagination (ORDER BY id, id < cursor).
-- Text filters compare in code-point order (SQLite's BINARY collation), a prefix as a range.
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
CREATE INDEX audit_log_target_idx ON audit_log (target, id);
CREATE INDEX audit_log_result_idx ON audit_log (json_extract(details, '$.result'), id);
-- `at` is RFC 3339 text whose fraction has 0 to 9 digits, which does not sort as time; time
-- filters compare this fixed-width key instead (the same expression as `AT_KEY` in
-- control-plane/src/store/sqlite.rs, which a test checks).
CREATE INDEX audit_log_at_key_idx ON audit_log (substr(at, 1, 19) || substr(CASE WHEN substr(at, 20, 1) = '.' THEN rtrim(substr(at, 21), 'Z') ELSE '' END || '000000000', 1, 9));
