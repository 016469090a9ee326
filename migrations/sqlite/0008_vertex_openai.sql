-- no-transaction
-- Provider kinds `vertex` and `openai`, and the settings of Vertex AI keys. Keep in step with
-- ../postgres/0008_vertex_openai.sql.
--
-- SQLite cannot change a CHECK constraint, so `providers` is rebuilt with SQLite's documented
-- procedure (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys off, then in
-- one transaction create the new table, copy the rows, drop the old table, rename the new one
-- into its place, check the foreign keys, commit, foreign keys back on.
--
-- Why this shape: `provider_keys.provider` references `providers (name) ON DELETE CASCADE` and
-- the store's connections enforce foreign keys, so with them on `DROP TABLE providers` would
-- delete every provider key; and renaming the OLD table away (`ALTER TABLE providers RENAME TO
-- ...`) would rewrite that reference to point at the renamed table. Renaming the NEW table into
-- the dropped one's name rewrites nothing that matters: `provider_keys` names `providers`, which
-- is the new table once the rename is done. `PRAGMA foreign_keys` has no effect inside a
-- transaction, hence `-- no-transaction` (the first line: sqlx runs this file as it is, outside
-- its own migration transaction) and our own BEGIN/COMMIT. `providers` has no index, trigger or
-- view to recreate (its primary key's index comes with the new table).
--
-- `vertex_config` holds a Vertex AI key's non-secret settings as JSON ({"project_id":
-- {"literal"|"env": ..}, "region": {"literal"|"env": ..}, "token_uri": ".."}); its service
-- account key file is `auth_credentials_secret` (`env:NAME` or `enc:v1:<base64>`, like the other
-- secret columns).
PRAGMA foreign_keys = OFF;

BEGIN;

CREATE TABLE providers_0008 (
    name                 TEXT PRIMARY KEY NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('bedrock', 'anthropic', 'vertex', 'openai')),
    network_config       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(network_config)),
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    extra_header_secrets TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(extra_header_secrets))
);

INSERT INTO providers_0008 (name, kind, network_config, created_at, updated_at, extra_header_secrets)
    SELECT name, kind, network_config, created_at, updated_at, extra_header_secrets FROM providers;

DROP TABLE providers;

ALTER TABLE providers_0008 RENAME TO providers;

ALTER TABLE provider_keys ADD COLUMN vertex_config TEXT
    CHECK (vertex_config IS NULL OR json_valid(vertex_config));
ALTER TABLE provider_keys ADD COLUMN auth_credentials_secret TEXT;

-- Every key still has its provider (a violation makes this insert fail the CHECK, which rolls
-- the migration back).
CREATE TEMP TABLE migration_0008_fk_check (violations INTEGER NOT NULL CHECK (violations = 0));
INSERT INTO migration_0008_fk_check SELECT COUNT(*) FROM pragma_foreign_key_check;
DROP TABLE migration_0008_fk_check;

COMMIT;

PRAGMA foreign_keys = ON;
