-- The MCP gateway (issue 13): MCP servers, the tool allowlists of teams (a key's own lives in
-- its `governance` JSON, `mcp_tools`) and the log of tool calls. Keep in step with
-- ../sqlite/0020_mcp.sql.
--
-- * `mcp_servers`: the servers whose tools data planes serve at `/mcp`. `transport` is `stdio`
--   (`command`, `args`, `env`, `cwd`: a child process of the data plane) or `http` (`url`,
--   `headers`: a remote Streamable HTTP server). Every value of `env` and `headers` is a secret,
--   stored like providers' extra-header values (migration 0003): name -> `env:NAME` (resolved by
--   the data plane) or `enc:v1:<base64>` (AES-256-GCM, bound to the server's id, the map and the
--   name). `allowed_tools`: patterns over the server's own tool names (empty: all).
--   `call_timeout_ms` 0: the data plane's default.
-- * `teams.mcp_tools`: the team's tool allowlist (a JSON array of patterns over served names
--   `<server>__<tool>`), NULL: no restriction.
-- * `mcp_tool_calls`: one row per tool call a data plane reported (a usage record with `mcp`
--   set), written in the usage batch's transaction, idempotent on `request_id`; never in
--   `usage_records`, the spend rollups or cost recomputation. Not partitioned: deleted by the
--   usage retention, by `started_at`, in slices.
CREATE TABLE mcp_servers (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL CONSTRAINT mcp_servers_name_key UNIQUE,
    transport       TEXT NOT NULL CHECK (transport IN ('stdio', 'http')),
    command         TEXT,
    args            JSONB NOT NULL DEFAULT '[]'::jsonb,
    env_secrets     JSONB NOT NULL DEFAULT '{}'::jsonb,
    cwd             TEXT,
    url             TEXT,
    header_secrets  JSONB NOT NULL DEFAULT '{}'::jsonb,
    allowed_tools   JSONB NOT NULL DEFAULT '[]'::jsonb,
    call_timeout_ms BIGINT NOT NULL DEFAULT 0,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CHECK ((transport = 'stdio') = (command IS NOT NULL)),
    CHECK ((transport = 'http') = (url IS NOT NULL))
);

ALTER TABLE teams ADD COLUMN mcp_tools JSONB;

CREATE TABLE mcp_tool_calls (
    request_id     TEXT PRIMARY KEY,
    started_at     TIMESTAMPTZ NOT NULL,
    virtual_key_id TEXT NOT NULL,
    team_id        UUID,
    customer_id    UUID,
    user_id        UUID,
    server         TEXT NOT NULL,
    tool           TEXT NOT NULL,
    status         INTEGER NOT NULL,
    error_class    TEXT NOT NULL,
    latency_ms     BIGINT NOT NULL
);
-- The newest calls first (`GET /api/mcp/calls`), of everyone, a key or a team.
CREATE INDEX mcp_tool_calls_started_idx ON mcp_tool_calls (started_at, request_id);
CREATE INDEX mcp_tool_calls_key_started_idx ON mcp_tool_calls (virtual_key_id, started_at, request_id);
CREATE INDEX mcp_tool_calls_team_started_idx ON mcp_tool_calls (team_id, started_at, request_id);
