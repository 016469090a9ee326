-- Content logging (issue 12). Keep in step with ../postgres/0018_content_logging.sql (which
-- explains the columns).
ALTER TABLE teams ADD COLUMN content_logging TEXT CHECK (json_valid(content_logging));

CREATE TABLE request_content (
    request_id     TEXT PRIMARY KEY NOT NULL,
    started_at     TEXT NOT NULL,
    request        BLOB NOT NULL,
    request_bytes  INTEGER NOT NULL,
    response       BLOB NOT NULL,
    response_bytes INTEGER NOT NULL
);
CREATE INDEX request_content_started_at_idx ON request_content (started_at);
