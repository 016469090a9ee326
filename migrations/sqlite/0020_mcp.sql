-- The MCP gateway (issue 13). Keep in step with ../postgres/0020_mcp.sql (which explains the
-- tables). Ids are 16-byte blobs, times fixed-width UTC text like `usage_records.started_at`
-- (`mcp_tool_calls`) or RFC 3339 (`mcp_servers`, as every config table).
CREATE TABLE mcp_servers (
    id              BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name            TEXT NOT NULL CONSTRAINT mcp_servers_name_key UNIQUE,
    transport       TEXT NOT NULL CHECK (transport IN ('stdio', 'http')),
    command         TEXT,
    args            TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(args)),
    env_secrets     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(env_secrets)),
    cwd             TEXT,
    url             TEXT,
    header_secrets  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(header_secrets)),
    allowed_tools   TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(allowed_tools)),
    call_timeout_ms INTEGER NOT NULL DEFAULT 0,
    enabled         BOOLEAN NOT NULL DEFAULT 1,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    CHECK ((transport = 'stdio') = (command IS NOT NULL)),
    CHECK ((transport = 'http') = (url IS NOT NULL))
);

ALTER TABLE teams ADD COLUMN mcp_tools TEXT CHECK (json_valid(mcp_tools));

CREATE TABLE mcp_tool_calls (
    request_id     TEXT PRIMARY KEY NOT NULL,
    started_at     TEXT NOT NULL,
    virtual_key_id TEXT NOT NULL,
    team_id        BLOB,
    customer_id    BLOB,
    user_id        BLOB,
    server         TEXT NOT NULL,
    tool           TEXT NOT NULL,
    status         INTEGER NOT NULL,
    error_class    TEXT NOT NULL,
    latency_ms     INTEGER NOT NULL
);
CREATE INDEX mcp_tool_calls_started_idx ON mcp_tool_calls (started_at, request_id);
CREATE INDEX mcp_tool_calls_key_started_idx ON mcp_tool_calls (virtual_key_id, started_at, request_id);
CREATE INDEX mcp_tool_calls_team_started_idx ON mcp_tool_calls (team_id, started_at, request_id);
