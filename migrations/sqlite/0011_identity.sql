-- Identity (issue 11): users signed in through SSO or provisioned by SCIM, their personal
-- virtual key, browser sessions, personal API tokens, and the identity settings (SSO, SCIM).
-- Keep in step with ../postgres/0011_identity.sql.
--
-- * `users.subject` is the OIDC `sub` of `users.issuer`; a user SCIM created before their first
--   login has no subject yet and is matched on `user_name` (case-folded) at that login.
-- * `role` is the role an admin assigned (NULL: from the identity provider's groups, see
--   control-plane/src/identity.rs); `team_id` is where the group mapping or an admin put them.
-- * A user has at most one personal virtual key (`virtual_keys.user_id` is unique), so neither
--   a later nor a concurrent login can create a second one. `key_generation` counts rotations:
--   the personal key's value is derived from the master key, the user id and it, and only its
--   digest is stored, like every virtual key's.
-- * Sessions and API tokens are stored as SHA-256 digests of their values.
-- * `member_key_limits` of a team: the limits (budgets, rate limit, concurrency) a member's
--   personal key gets when the user is placed in the team.
CREATE TABLE users (
    id             BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    issuer         TEXT,
    subject        TEXT,
    user_name      TEXT NOT NULL CONSTRAINT users_user_name_key UNIQUE,
    external_id    TEXT,
    email          TEXT,
    display_name   TEXT,
    groups         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(groups)),
    role           TEXT CHECK (role IN ('admin', 'team-admin', 'member', 'viewer')),
    team_id        BLOB REFERENCES teams (id) ON DELETE SET NULL,
    active         BOOLEAN NOT NULL,
    key_generation INTEGER NOT NULL DEFAULT 0,
    last_login_at  TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    CONSTRAINT users_subject_key UNIQUE (issuer, subject)
);

ALTER TABLE virtual_keys ADD COLUMN user_id BLOB REFERENCES users (id) ON DELETE SET NULL;
CREATE UNIQUE INDEX virtual_keys_user_id_key ON virtual_keys (user_id);

ALTER TABLE teams ADD COLUMN member_key_limits TEXT CHECK (json_valid(member_key_limits));

CREATE TABLE sessions (
    id_sha256  BLOB PRIMARY KEY NOT NULL CHECK (length(id_sha256) = 32),
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE api_tokens (
    id           BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_sha256 BLOB NOT NULL CONSTRAINT api_tokens_token_sha256_key UNIQUE
                 CHECK (length(token_sha256) = 32),
    value_prefix TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT,
    CONSTRAINT api_tokens_user_name_key UNIQUE (user_id, name)
);

-- Identity settings as JSON documents, one row each (`sso`, `scim`); secrets in them sealed.
CREATE TABLE settings (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL CHECK (json_valid(value)),
    updated_at TEXT NOT NULL
);
