-- Ingest throughput (core, issue 7): the time of an agent's last evaluation, kept once per
-- agent instead of on every finding row.
--
-- Every evaluation covers all of an agent's rules (a finding it no longer produces is retired),
-- so each current finding of an agent was last evaluated at the agent's last evaluation. Before
-- this, each evaluation moved `findings.evaluated_at` on all of the agent's rows (about 28, whose
-- evidence spreads them over several pages), rewriting those pages at every report. Now it
-- writes one row here; `findings.evaluated_at` keeps the time its row was last written (a
-- change), and readers take this table's time (see store/sqlite/findings.rs, `current`).
CREATE TABLE agent_evaluations (
    agent_id TEXT PRIMARY KEY REFERENCES agents(id),
    evaluated_at INTEGER NOT NULL
);

-- What is stored already: the rows' times moved together, so their latest is the agent's.
INSERT INTO agent_evaluations (agent_id, evaluated_at)
SELECT agent_id, MAX(evaluated_at) FROM findings GROUP BY agent_id;
