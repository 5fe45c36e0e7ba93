-- Runtime silences (issue 12): maintenance windows created while the collector runs (API,
-- CLI, dashboard), beside the `[[silence]]` tables of the configuration file. A silence holds
-- the notifications of the incidents its matchers select (NULL matches anything) from
-- `starts_at` until `ends_at`, or until `ended_at` when a person ended it early; incidents are
-- still recorded. Rows are never deleted: who silenced what, when and why is history.
-- `start_recorded_at` / `end_recorded_at`: when the engine wrote the silence's start and end
-- into the affected incidents' timelines (so a restart neither repeats nor loses them).
CREATE TABLE silences (
    id INTEGER PRIMARY KEY,
    practice TEXT,
    site TEXT,
    source TEXT,
    subject TEXT,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    ended_at INTEGER,
    ended_by TEXT,
    start_recorded_at INTEGER,
    end_recorded_at INTEGER
);
CREATE INDEX silences_by_end ON silences (ends_at);
CREATE INDEX silences_unrecorded ON silences (end_recorded_at);
