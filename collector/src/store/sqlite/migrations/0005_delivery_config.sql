-- Reliable delivery (issue 8) and the agent's hash chain (issue 11): per-agent delivery state,
-- gaps, what the agent said it dropped, integrity problems, heartbeat-reported state, and the
-- central agent configuration with its history.

-- `digest`: hex sha256 of the report's canonical content (`rounds_protocol::chain_input`), to
-- tell a resend (same digest) from other content at the same sequence (409).
ALTER TABLE reports ADD COLUMN digest TEXT;

-- Delivery state per agent: reports stored, the chain head (sequence and hash of the highest
-- stored report), and what the agent said in its last heartbeat.
ALTER TABLE agents ADD COLUMN reports_stored INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN chain_sequence INTEGER;
ALTER TABLE agents ADD COLUMN chain_hash TEXT;
ALTER TABLE agents ADD COLUMN config_version TEXT;
ALTER TABLE agents ADD COLUMN config_error TEXT;
ALTER TABLE agents ADD COLUMN spool_depth INTEGER;
ALTER TABLE agents ADD COLUMN spool_error TEXT;
UPDATE agents SET reports_stored = (SELECT COUNT(*) FROM reports r WHERE r.agent_id = agents.id);

-- Missing sequence ranges (inclusive): opened when a report arrives beyond the next expected
-- sequence, narrowed or closed when a missing one arrives late.
CREATE TABLE delivery_gaps (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    detected_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, first)
);

-- Ranges the agent said it dropped without sending (`Report.dropped`), and why.
CREATE TABLE delivery_dropped (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    reason TEXT NOT NULL,
    announced_in INTEGER NOT NULL,
    PRIMARY KEY (agent_id, first, last)
);

-- Integrity problems of an agent's delivery and hash chain, kept for good.
CREATE TABLE integrity_events (
    id INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    sequence INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX integrity_events_by_agent ON integrity_events (agent_id, id);

-- Central agent configuration, one row per change (never overwritten): the newest row per
-- (practice, site) is in force; `toml` NULL means cleared.
CREATE TABLE agent_config_versions (
    id INTEGER PRIMARY KEY,
    practice_id INTEGER NOT NULL REFERENCES practices(id),
    site_id INTEGER REFERENCES sites(id),
    toml TEXT,
    source TEXT NOT NULL,
    set_at INTEGER NOT NULL,
    set_by TEXT NOT NULL
);
CREATE INDEX agent_config_versions_by_level ON agent_config_versions (practice_id, site_id, id);
