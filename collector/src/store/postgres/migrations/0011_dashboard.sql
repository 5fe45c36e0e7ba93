-- PostgreSQL translation of store/sqlite/migrations/0011_dashboard.sql (issue 17): same tables,
-- columns and order; SQLite's six triggers become two trigger functions (plpgsql).
-- Dashboard read paths (issue 13): the overview reads counts, not every finding.
--
-- Agents of a site, and an agent's finding history by time.
CREATE INDEX agents_by_site ON agents (site_id);
CREATE INDEX finding_changes_by_agent_time ON finding_changes (agent_id, at);

-- The current findings of each agent counted by outcome (`accepted`: failing or erroring with
-- an accepted risk, also counted in `fail`/`error`). Kept by the trigger below in the same
-- transaction as every change to `findings`; derived data only (the history stays in
-- `finding_changes`; export/import skip it and rebuild it).
CREATE TABLE finding_counts (
    agent_id TEXT PRIMARY KEY,
    pass BIGINT NOT NULL DEFAULT 0,
    fail BIGINT NOT NULL DEFAULT 0,
    error BIGINT NOT NULL DEFAULT 0,
    not_applicable BIGINT NOT NULL DEFAULT 0,
    accepted BIGINT NOT NULL DEFAULT 0
);

-- The current findings of each practice's agents per rule: `fail` and `error` WITHOUT an
-- accepted risk, `accepted` those with one, and `bad_since` the oldest `status_since` of the
-- unaccepted failing or erroring ones. Recomputed for (practice, rule) by the trigger below.
CREATE TABLE practice_rule_tallies (
    practice_id BIGINT NOT NULL,
    rule TEXT NOT NULL,
    pass BIGINT NOT NULL,
    fail BIGINT NOT NULL,
    error BIGINT NOT NULL,
    not_applicable BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    bad_since BIGINT,
    PRIMARY KEY (practice_id, rule)
);

-- +1 / -1 of one finding row in its agent's counts.
CREATE FUNCTION rounds_count_finding(agent TEXT, st TEXT, exc TEXT, d BIGINT) RETURNS void AS $$
BEGIN
    INSERT INTO finding_counts (agent_id) VALUES (agent) ON CONFLICT (agent_id) DO NOTHING;
    UPDATE finding_counts SET
        pass = pass + d * (st = 'pass')::int,
        fail = fail + d * (st = 'fail')::int,
        error = error + d * (st = 'error')::int,
        not_applicable = not_applicable + d * (st = 'not_applicable')::int,
        accepted = accepted + d * (exc IS NOT NULL AND st IN ('fail', 'error'))::int
    WHERE agent_id = agent;
END;
$$ LANGUAGE plpgsql;

-- (practice of `agent`, rule `r`): drop its tally and count it again from `findings`.
CREATE FUNCTION rounds_recount_tally(agent TEXT, r TEXT) RETURNS void AS $$
DECLARE
    p BIGINT;
BEGIN
    SELECT s.practice_id INTO p FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = agent;
    DELETE FROM practice_rule_tallies WHERE rule = r AND practice_id = p;
    INSERT INTO practice_rule_tallies (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
    SELECT s.practice_id, f.rule,
           COUNT(*) FILTER (WHERE f.status = 'pass'),
           COUNT(*) FILTER (WHERE f.status = 'fail' AND f.exception IS NULL),
           COUNT(*) FILTER (WHERE f.status = 'error' AND f.exception IS NULL),
           COUNT(*) FILTER (WHERE f.status = 'not_applicable'),
           COUNT(*) FILTER (WHERE f.status IN ('fail', 'error') AND f.exception IS NOT NULL),
           MIN(CASE WHEN f.status IN ('fail', 'error') AND f.exception IS NULL THEN f.status_since END)
    FROM sites s JOIN agents a ON a.site_id = s.id
      JOIN findings f ON f.agent_id = a.id AND f.rule = r
    WHERE s.practice_id = p
    GROUP BY s.practice_id, f.rule;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION rounds_findings_counted() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM rounds_count_finding(OLD.agent_id, OLD.status, OLD.exception, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM rounds_count_finding(NEW.agent_id, NEW.status, NEW.exception, 1);
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM rounds_recount_tally(OLD.agent_id, OLD.rule);
    ELSE
        PERFORM rounds_recount_tally(NEW.agent_id, NEW.rule);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER findings_counted_insert AFTER INSERT ON findings
    FOR EACH ROW EXECUTE FUNCTION rounds_findings_counted();
CREATE TRIGGER findings_counted_delete AFTER DELETE ON findings
    FOR EACH ROW EXECUTE FUNCTION rounds_findings_counted();
CREATE TRIGGER findings_counted_update AFTER UPDATE OF status, exception, status_since ON findings
    FOR EACH ROW EXECUTE FUNCTION rounds_findings_counted();

-- What is stored already.
INSERT INTO finding_counts (agent_id, pass, fail, error, not_applicable, accepted)
SELECT agent_id,
       COUNT(*) FILTER (WHERE status = 'pass'),
       COUNT(*) FILTER (WHERE status = 'fail'),
       COUNT(*) FILTER (WHERE status = 'error'),
       COUNT(*) FILTER (WHERE status = 'not_applicable'),
       COUNT(*) FILTER (WHERE exception IS NOT NULL AND status IN ('fail', 'error'))
FROM findings GROUP BY agent_id;
INSERT INTO practice_rule_tallies (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
SELECT s.practice_id, f.rule,
       COUNT(*) FILTER (WHERE f.status = 'pass'),
       COUNT(*) FILTER (WHERE f.status = 'fail' AND f.exception IS NULL),
       COUNT(*) FILTER (WHERE f.status = 'error' AND f.exception IS NULL),
       COUNT(*) FILTER (WHERE f.status = 'not_applicable'),
       COUNT(*) FILTER (WHERE f.status IN ('fail', 'error') AND f.exception IS NOT NULL),
       MIN(CASE WHEN f.status IN ('fail', 'error') AND f.exception IS NULL THEN f.status_since END)
FROM findings f JOIN agents a ON a.id = f.agent_id JOIN sites s ON s.id = a.site_id
GROUP BY s.practice_id, f.rule;
