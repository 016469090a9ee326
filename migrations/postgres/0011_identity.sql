-- Identity (issue 11): users signed in through SSO or provisioned by SCIM, their personal
-- virtual key, browser sessions, personal API tokens, and the identity settings (SSO, SCIM).
-- Keep in step with ../sqlite/0011_identity.sql, which explains the columns.
CREATE TABLE users (
    id             UUID PRIMARY KEY,
    issuer         TEXT,
    subject        TEXT,
    user_name      TEXT NOT NULL CONSTRAINT users_user_name_key UNIQUE,
    external_id    TEXT,
    email          TEXT,
    display_name   TEXT,
    groups         JSONB NOT NULL DEFAULT '[]',
    role           TEXT CHECK (role IN ('admin', 'team-admin', 'member', 'viewer')),
    team_id        UUID REFERENCES teams (id) ON DELETE SET NULL,
    active         BOOLEAN NOT NULL,
    key_generation BIGINT NOT NULL DEFAULT 0,
    last_login_at  TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT users_subject_key UNIQUE (issuer, subject)
);

ALTER TABLE virtual_keys ADD COLUMN user_id UUID REFERENCES users (id) ON DELETE SET NULL;
CREATE UNIQUE INDEX virtual_keys_user_id_key ON virtual_keys (user_id);

ALTER TABLE teams ADD COLUMN member_key_limits JSONB;

CREATE TABLE sessions (
    id_sha256  BYTEA PRIMARY KEY CHECK (octet_length(id_sha256) = 32),
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_sha256 BYTEA NOT NULL CONSTRAINT api_tokens_token_sha256_key UNIQUE
                 CHECK (octet_length(token_sha256) = 32),
    value_prefix TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    CONSTRAINT api_tokens_user_name_key UNIQUE (user_id, name)
);

CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
