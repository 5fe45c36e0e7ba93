-- Compliance reports (issue 14): every report the collector issued, and every scheduled
-- delivery of one. Rows are never updated or deleted: `report verify` and auditors read them.

-- One row per issued file. `content_sha256` is the hex SHA-256 of the report's canonical
-- content (the same for every format of the same practice and period while the history of
-- that period is unchanged); `file_sha256` the hex SHA-256 of the exact bytes handed out.
CREATE TABLE issued_reports (
    id TEXT PRIMARY KEY,
    practice_id INTEGER NOT NULL REFERENCES practices(id),
    practice TEXT NOT NULL,
    period_from TEXT NOT NULL,
    period_to TEXT NOT NULL,
    format TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    issued_by TEXT NOT NULL,
    collector_version TEXT NOT NULL
);
CREATE INDEX issued_reports_by_file ON issued_reports (file_sha256);
CREATE INDEX issued_reports_by_practice ON issued_reports (practice_id, issued_at);

-- One row per attempt of a scheduled e-mail delivery: which schedule, to whom, and how it went.
CREATE TABLE report_deliveries (
    id INTEGER PRIMARY KEY,
    report_id TEXT NOT NULL REFERENCES issued_reports(id),
    schedule TEXT NOT NULL,
    recipients TEXT NOT NULL,
    attempted_at INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX report_deliveries_by_schedule ON report_deliveries (schedule, attempted_at);
