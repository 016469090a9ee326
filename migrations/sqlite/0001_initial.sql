-- Tollgate control-plane schema (SQLite). Keep in step with ../postgres/0001_initial.sql.

-- Single-row counter; every mutation bumps it in the same transaction.
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL CHECK (version >= 1)
);
INSERT INTO config_version (id, version) VALUES (1, 1);

CREATE TABLE providers (
    name           TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('bedrock', 'anthropic')),
    network_config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(network_config)),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

-- Secret columns hold `env:NAME` (a reference resolved by the data plane) or
-- `enc:v1:<base64(nonce || AES-256-GCM ciphertext)>`; never plaintext.
CREATE TABLE provider_keys (
    id                   BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    provider             TEXT NOT NULL REFERENCES providers (name) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    description          TEXT,
    models               TEXT NOT NULL CHECK (json_valid(models)),
    weight               REAL NOT NULL CHECK (weight > 0),
    aliases              TEXT NOT NULL CHECK (json_valid(aliases)),
    enabled              BOOLEAN NOT NULL,
    value_secret         TEXT,
    bedrock_config       TEXT CHECK (bedrock_config IS NULL OR json_valid(bedrock_config)),
    access_key_secret    TEXT,
    secret_key_secret    TEXT,
    session_token_secret TEXT,
    external_id_secret   TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    CONSTRAINT provider_keys_provider_name_key UNIQUE (provider, name)
);

CREATE TABLE virtual_keys (
    id             BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name           TEXT NOT NULL CONSTRAINT virtual_keys_name_key UNIQUE,
    description    TEXT,
    key_sha256     BLOB NOT NULL CONSTRAINT virtual_keys_key_sha256_key UNIQUE CHECK (length(key_sha256) = 32),
    value_prefix   TEXT NOT NULL,
    providers      TEXT NOT NULL CHECK (json_valid(providers)),
    monthly_budget REAL NOT NULL CHECK (monthly_budget >= 0),
    active         BOOLEAN NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

-- Who changed what. `details` never contains secrets.
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    config_version INTEGER NOT NULL,
    details        TEXT NOT NULL CHECK (json_valid(details))
);
