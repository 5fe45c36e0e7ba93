-- Practices, sites, agents, reports and observations, users, sessions, API keys, audit log.
CREATE TABLE practices (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE sites (
    id INTEGER PRIMARY KEY,
    practice_id INTEGER NOT NULL REFERENCES practices(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (practice_id, name)
);
CREATE TABLE enrollment_tokens (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    site_id INTEGER NOT NULL REFERENCES sites(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    used_by_agent TEXT
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    site_id INTEGER NOT NULL REFERENCES sites(id),
    hostname TEXT NOT NULL,
    os TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    enrolled_at INTEGER NOT NULL,
    last_seen_at INTEGER,
    last_report_at INTEGER,
    last_sequence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE reports (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    sequence INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    observation_count INTEGER NOT NULL,
    PRIMARY KEY (agent_id, sequence)
);
CREATE TABLE observations (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    observed_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    error TEXT
);
CREATE INDEX observations_by_agent ON observations (agent_id, kind, observed_at);
CREATE TABLE latest_observations (
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    observed_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (agent_id, kind, subject)
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    practice_id INTEGER REFERENCES practices(id),
    created_at INTEGER NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    practice_id INTEGER REFERENCES practices(id),
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
