-- Provider kinds `vertex` and `openai`, and the settings of Vertex AI keys. Keep in step with
-- ../sqlite/0008_vertex_openai.sql.
--
-- The kind CHECK of 0001 is an unnamed column constraint, which PostgreSQL named
-- `providers_kind_check`; it is replaced under the same name (a DROP that fails if the name
-- differs, rather than leaving the old rule in place).
ALTER TABLE providers
    DROP CONSTRAINT providers_kind_check,
    ADD CONSTRAINT providers_kind_check CHECK (kind IN ('bedrock', 'anthropic', 'vertex', 'openai'));

-- `vertex_config`: a Vertex AI key's non-secret settings ({"project_id": {"literal"|"env": ..},
-- "region": {"literal"|"env": ..}, "token_uri": ".."}); `auth_credentials_secret`: its service
-- account key file (`env:NAME` or `enc:v1:<base64>`, like the other secret columns).
ALTER TABLE provider_keys
    ADD COLUMN vertex_config JSONB,
    ADD COLUMN auth_credentials_secret TEXT;
