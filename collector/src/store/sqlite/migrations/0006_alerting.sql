-- Alerting (issue 12): incidents with their timeline, the notification outbox, the engine's
-- per-source windows and the job leases that let several collectors on one database each do a
-- job once.

-- One row per incident. At most one incident per (source, subject) is not resolved (the
-- partial unique index below): that is the deduplication. `practice_id` is NULL for an
-- MSP-wide incident (an EHR vendor outage), which names the practices in
-- `practices_affected` (JSON array of names). `parent_id`: the incident this one is folded
-- into (an agent's offline incident into its site's). `state`: open, acknowledged, resolved.
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    flapping INTEGER NOT NULL DEFAULT 0,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    probable_cause TEXT NOT NULL,
    -- Machine-readable cause: site_network, isp_dns, isp_link, site_power, ehr_vendor,
    -- on_prem_server, one_machine, finding, channel, unknown.
    cause_kind TEXT NOT NULL,
    practice_id INTEGER REFERENCES practices(id),
    practice TEXT,
    site TEXT,
    agent_id TEXT,
    practices_affected TEXT NOT NULL DEFAULT '[]',
    parent_id INTEGER REFERENCES incidents(id),
    -- Resolved only by a person (audit log tampered).
    manual_resolve INTEGER NOT NULL DEFAULT 0,
    opened_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by TEXT,
    resolved_at INTEGER,
    resolved_by TEXT,
    last_notified_at INTEGER,
    escalated_at INTEGER,
    -- Source-specific facts (agents of the site, endpoint, rule), JSON object.
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (source, subject) WHERE state != 'resolved';
CREATE INDEX incidents_by_state ON incidents (state, opened_at);
CREATE INDEX incidents_by_practice ON incidents (practice_id, opened_at);
CREATE INDEX incidents_by_parent ON incidents (parent_id);

-- The timeline: every event of an incident, in order. `kind`: opened, cause_changed,
-- child_folded, notified, notify_failed, held, acknowledged, note, flapping, escalated,
-- silenced, resolved, reopened. `actor`: `engine` or a person; `channel` for notifications.
CREATE TABLE incident_events (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT,
    message TEXT NOT NULL
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);

-- Pending and past notifications, one row per (notification, channel). `status`: pending
-- (to send at `next_attempt_at`), delivered, failed (gave up), cancelled (the incident
-- resolved within the hold time, or its parent is open), silenced (a silence held it).
CREATE TABLE alert_outbox (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    finished_at INTEGER
);
CREATE INDEX alert_outbox_due ON alert_outbox (status, next_attempt_at);
CREATE INDEX alert_outbox_by_incident ON alert_outbox (incident_id, id);

-- N-of-M windows per (source, subject): the last results, newest last (`results`: a string of
-- `F` and `P`), and whether the source counts as failing now.
CREATE TABLE alert_windows (
    source TEXT NOT NULL,
    subject TEXT NOT NULL,
    results TEXT NOT NULL,
    failing INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, subject)
);

-- Job leases: a job (the alert tick, the outbox worker) runs where its lease is held.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until INTEGER NOT NULL
);
