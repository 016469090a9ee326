-- The audit log's hash chain (control-plane/src/audit_chain.rs). Keep in step with
-- ../postgres/0009_audit_chain.sql.
--
-- Every row written from here on carries the previous row's hash and its own, written in the
-- transaction of the change it records; `tollgate audit verify` checks the chain. Rows written
-- before this migration keep NULL in both columns: they come before the chain.
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
