-- Extra-header values of providers are secrets: sealed like provider-key secrets. Keep in step
-- with ../sqlite/0003_extra_header_secrets.sql.
--
-- `extra_header_secrets` maps header name -> `env:NAME` or `enc:v1:<base64>` (AES-256-GCM, bound
-- to the provider and header name). Rows written before this migration keep their plaintext
-- values in `network_config.extra_headers` until the control plane seals them when it starts
-- (sealing needs the secret key, which the database never sees); from then on
-- `network_config` holds no header values.
ALTER TABLE providers
    ADD COLUMN extra_header_secrets JSONB NOT NULL DEFAULT '{}'::jsonb;
