-- Export output (issue 12): what an export job writes, in chunks of at most a page of rows,
-- read back in `seq` order by `GET /api/jobs/{id}/download`. Keep in step with
-- ../sqlite/0019_job_output.sql.
--
-- * A chunk is inserted in the same transaction as the job's checkpoint (its `cursor` names the
--   next `seq` and where the rows continue), only while the writer still owns the running job,
--   so a replica that takes a job over resumes after the last chunk without writing a row twice.
-- * Outputs expire a week after their job finished (`jobs::EXPORT_TTL`); the job runner deletes
--   expired chunks. Deleting a job deletes its chunks.
CREATE TABLE job_output (
    job_id UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL CHECK (seq >= 0),
    bytes  BYTEA NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX jobs_finished_at_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
