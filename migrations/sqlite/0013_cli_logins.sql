-- `tollgate login` (issue 11): device-style sign-ins of the command-line tool, RFC 8628 style.
-- Keep in step with ../postgres/0013_cli_logins.sql.
--
-- * Only the SHA-256 of the device code (the CLI's secret) is stored; the user code is what
--   the person checks in the browser (8 letters, stored without the dash).
-- * `user_id` is who approved (or denied, with `denied`) it; NULL while pending.
-- * A row lives until it is redeemed (deleted when the CLI receives the key), refused, or
--   expired (purged).
CREATE TABLE cli_logins (
    device_code_sha256 BLOB PRIMARY KEY NOT NULL CHECK (length(device_code_sha256) = 32),
    user_code          TEXT NOT NULL CONSTRAINT cli_logins_user_code_key UNIQUE,
    user_id            BLOB REFERENCES users (id) ON DELETE CASCADE,
    denied             BOOLEAN NOT NULL DEFAULT FALSE,
    created_at         TEXT NOT NULL,
    expires_at         TEXT NOT NULL,
    last_poll_at       TEXT
);
CREATE INDEX cli_logins_expires_at_idx ON cli_logins (expires_at);
