-- PostgreSQL translation of store/sqlite/migrations/0002_findings.sql (issue 17): same tables, columns and order.
-- The current finding per agent and rule. `citations`, `evidence` and `exception` are JSON;
-- `status_since` is when the rule last changed status on this agent.
CREATE TABLE findings (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    rule TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    citations TEXT NOT NULL,
    evidence TEXT NOT NULL,
    message TEXT NOT NULL,
    remediation TEXT,
    exception TEXT,
    evaluated_at BIGINT NOT NULL,
    status_since BIGINT NOT NULL,
    PRIMARY KEY (agent_id, rule)
);
