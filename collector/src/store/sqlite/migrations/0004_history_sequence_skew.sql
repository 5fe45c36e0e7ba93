-- Finding history, per-check current state, last-confirmed times, skew.
--
-- `finding_changes`: one row per appearance (`old_status` NULL), status or exception change,
-- and retirement (`new_status` NULL) of an agent's finding for a rule, with the finding as it
-- was at that moment. "As at T" is the newest row per (agent, rule) at or before T.
CREATE TABLE finding_changes (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    rule TEXT NOT NULL,
    at INTEGER NOT NULL,
    old_status TEXT,
    new_status TEXT,
    status_since INTEGER NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    citations TEXT NOT NULL,
    evidence TEXT NOT NULL,
    message TEXT NOT NULL,
    remediation TEXT,
    old_exception TEXT,
    exception TEXT
);
CREATE INDEX finding_changes_by_agent ON finding_changes (agent_id, rule, at);
CREATE INDEX finding_changes_by_time ON finding_changes (at);
-- Findings stored before the history existed appear at the time they took their status.
INSERT INTO finding_changes (agent_id, rule, at, old_status, new_status, status_since, severity, title, citations,
                             evidence, message, remediation, old_exception, exception)
SELECT agent_id, rule, status_since, NULL, status, status_since, severity, title, citations, evidence, message,
       remediation, NULL, exception
FROM findings;

-- Which check produced a report, whether it was that check's complete set of subjects, and
-- its hash chain.
ALTER TABLE reports ADD COLUMN check_name TEXT;
ALTER TABLE reports ADD COLUMN complete INTEGER NOT NULL DEFAULT 0;
ALTER TABLE reports ADD COLUMN prev_hash TEXT;
ALTER TABLE reports ADD COLUMN hash TEXT;

-- The current state per (agent, kind, subject) follows the highest sequence. `check_name`
-- says which check last reported the subject (a complete run of it retires subjects it no
-- longer names); `confirmed_at`/`confirmed_sequence` when a report last carried the same
-- payload; `future_dated` when the agent dated it too far ahead and the receive time was used.
ALTER TABLE latest_observations ADD COLUMN check_name TEXT;
ALTER TABLE latest_observations ADD COLUMN confirmed_at INTEGER;
ALTER TABLE latest_observations ADD COLUMN confirmed_sequence INTEGER;
ALTER TABLE latest_observations ADD COLUMN future_dated INTEGER NOT NULL DEFAULT 0;
UPDATE latest_observations SET confirmed_sequence = sequence;
ALTER TABLE observations ADD COLUMN future_dated INTEGER NOT NULL DEFAULT 0;
CREATE INDEX observations_by_agent_sequence ON observations (agent_id, sequence);

-- The agent's clock minus the collector's at its last heartbeat.
ALTER TABLE agents ADD COLUMN clock_skew_ms INTEGER;
ALTER TABLE agents ADD COLUMN clock_skew_at INTEGER;
