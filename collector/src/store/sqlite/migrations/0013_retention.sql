-- Retention (issue 17): raw observations older than `[retention] observations_days` are rolled
-- up into hourly rows here and removed; hourly rows older than `hourly_days` are folded into
-- daily ones. A rollup row summarises the observation rows (one per payload change) of one
-- (agent, kind, subject) in one bucket: how many there were, and the first and the last of
-- them in full (sequence, time, status, payload, error), which is what the compliance reports
-- read of a period whose raw rows are gone (the state at the period's start, the inventory,
-- EHR probe results). `bucket`: `hour` or `day`; `bucket_start`: the bucket's first instant.
CREATE TABLE observation_rollups (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    bucket TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    first_sequence INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    first_status TEXT NOT NULL,
    first_data TEXT NOT NULL,
    first_error TEXT,
    last_sequence INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    last_status TEXT NOT NULL,
    last_data TEXT NOT NULL,
    last_error TEXT,
    UNIQUE (agent_id, kind, subject, bucket, bucket_start)
);
-- Hourly rows due to become daily ones, oldest first.
CREATE INDEX observation_rollups_by_bucket ON observation_rollups (bucket, bucket_start);

-- Raw observations due to be rolled up, oldest first; and the newest row per subject (the
-- current state, never removed) found without scanning the agent's history.
CREATE INDEX observations_by_time ON observations (observed_at);
CREATE INDEX observations_by_subject ON observations (agent_id, kind, subject, sequence);

-- Records older than `records_years` are removed: incidents resolved before then, audit-log
-- entries and issued reports made before then.
CREATE INDEX incidents_by_resolved ON incidents (resolved_at);
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX issued_reports_by_time ON issued_reports (issued_at);
CREATE INDEX report_deliveries_by_report ON report_deliveries (report_id);
