-- Ingest (core, issue 7): a complete run of a check that repeats a subject's payload confirmed
-- it with an UPDATE of that subject's current row (45 of a report's 50 rows when 5 change,
-- most of the writer's work per report). The run's confirmation (sequence, times) is now kept
-- once per (agent, check), and a current row reads it when the run covers it: the row is of
-- that check, older than the run (`sequence`), and was written before the run was recorded
-- (`check_epoch` below the run's `epoch`; a late, older report written after it is not
-- covered). `store/sqlite/reports.rs` says how the two are read together.
CREATE TABLE check_confirmations (
    agent_id TEXT NOT NULL,
    check_name TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    observed_at INTEGER NOT NULL,
    confirmed_at INTEGER NOT NULL,
    future_dated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, check_name)
);
ALTER TABLE latest_observations ADD COLUMN check_epoch INTEGER NOT NULL DEFAULT 0;
