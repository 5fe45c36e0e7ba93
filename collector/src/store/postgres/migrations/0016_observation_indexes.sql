-- Ingest (core, issue 7): every observation row that a changed payload writes went into four
-- indexes, two of them ordered by subject or kind within the agent, so each changed payload
-- dirtied leaf pages of both at scattered places (about 59 WAL pages per report when all 50
-- payloads of a report change). `observations_by_subject` (agent, kind, subject, sequence)
-- serves what `observations_by_agent` (agent, kind, observed_at) served, through its
-- (agent, kind) prefix; `observations_by_agent_sequence` (agent, sequence) is read by no
-- query. Both go; the plans of the queries on `observations` are checked by a test.
DROP INDEX observations_by_agent;
DROP INDEX observations_by_agent_sequence;
