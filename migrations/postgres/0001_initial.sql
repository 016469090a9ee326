-- Tollgate control-plane schema (PostgreSQL). Keep in step with ../sqlite/0001_initial.sql.

-- Single-row counter; every mutation bumps it in the same transaction (which also serialises
-- writers on this row).
CREATE TABLE config_version (
    id      SMALLINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL CHECK (version >= 1)
);
INSERT INTO config_version (id, version) VALUES (1, 1);

CREATE TABLE providers (
    name           TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('bedrock', 'anthropic')),
    network_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- Secret columns hold `env:NAME` (a reference resolved by the data plane) or
-- `enc:v1:<base64(nonce || AES-256-GCM ciphertext)>`; never plaintext.
CREATE TABLE provider_keys (
    id                   UUID PRIMARY KEY,
    provider             TEXT NOT NULL REFERENCES providers (name) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    description          TEXT,
    models               JSONB NOT NULL,
    weight               DOUBLE PRECISION NOT NULL CHECK (weight > 0),
    aliases              JSONB NOT NULL,
    enabled              BOOLEAN NOT NULL,
    value_secret         TEXT,
    bedrock_config       JSONB,
    access_key_secret    TEXT,
    secret_key_secret    TEXT,
    session_token_secret TEXT,
    external_id_secret   TEXT,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    CONSTRAINT provider_keys_provider_name_key UNIQUE (provider, name)
);

CREATE TABLE virtual_keys (
    id             UUID PRIMARY KEY,
    name           TEXT NOT NULL CONSTRAINT virtual_keys_name_key UNIQUE,
    description    TEXT,
    key_sha256     BYTEA NOT NULL CONSTRAINT virtual_keys_key_sha256_key UNIQUE
                   CHECK (octet_length(key_sha256) = 32),
    value_prefix   TEXT NOT NULL,
    providers      JSONB NOT NULL,
    monthly_budget DOUBLE PRECISION NOT NULL CHECK (monthly_budget >= 0),
    active         BOOLEAN NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- Who changed what. `details` never contains secrets.
CREATE TABLE audit_log (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    config_version BIGINT NOT NULL,
    details        JSONB NOT NULL
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
