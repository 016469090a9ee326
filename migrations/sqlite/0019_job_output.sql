-- Export output (issue 12): what an export job writes, in chunks. Keep in step with
-- ../postgres/0019_job_output.sql (which explains the table).
CREATE TABLE job_output (
    job_id BLOB NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL CHECK (seq >= 0),
    bytes  BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX jobs_finished_at_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
