-- Dashboard read paths (issue 13): the overview reads counts, not every finding.
--
-- Agents of a site, and an agent's finding history by time (a practice's page reads its own
-- agents' history of the last 30 days, not the fleet's).
CREATE INDEX agents_by_site ON agents (site_id);
CREATE INDEX finding_changes_by_agent_time ON finding_changes (agent_id, at);

-- The current findings of each agent counted by outcome (`accepted`: failing or erroring with
-- an accepted risk, also counted in `fail`/`error`, as the agents list always counted them).
-- Kept by the triggers below in the same transaction as every change to `findings`; derived
-- data only (the history stays in `finding_changes`).
CREATE TABLE finding_counts (
    agent_id TEXT PRIMARY KEY,
    pass INTEGER NOT NULL DEFAULT 0,
    fail INTEGER NOT NULL DEFAULT 0,
    error INTEGER NOT NULL DEFAULT 0,
    not_applicable INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- The current findings of each practice's agents per rule: `fail` and `error` WITHOUT an
-- accepted risk, `accepted` those with one, and `bad_since` the oldest `status_since` of the
-- unaccepted failing or erroring ones. Recomputed for (practice, rule) by the triggers below.
CREATE TABLE practice_rule_tallies (
    practice_id INTEGER NOT NULL,
    rule TEXT NOT NULL,
    pass INTEGER NOT NULL,
    fail INTEGER NOT NULL,
    error INTEGER NOT NULL,
    not_applicable INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    bad_since INTEGER,
    PRIMARY KEY (practice_id, rule)
) WITHOUT ROWID;

CREATE TRIGGER findings_counted_insert AFTER INSERT ON findings BEGIN
    INSERT INTO finding_counts (agent_id) VALUES (NEW.agent_id) ON CONFLICT (agent_id) DO NOTHING;
    UPDATE finding_counts SET
        pass = pass + (NEW.status = 'pass'),
        fail = fail + (NEW.status = 'fail'),
        error = error + (NEW.status = 'error'),
        not_applicable = not_applicable + (NEW.status = 'not_applicable'),
        accepted = accepted + (NEW.exception IS NOT NULL AND NEW.status IN ('fail', 'error'))
    WHERE agent_id = NEW.agent_id;
END;

CREATE TRIGGER findings_counted_delete AFTER DELETE ON findings BEGIN
    UPDATE finding_counts SET
        pass = pass - (OLD.status = 'pass'),
        fail = fail - (OLD.status = 'fail'),
        error = error - (OLD.status = 'error'),
        not_applicable = not_applicable - (OLD.status = 'not_applicable'),
        accepted = accepted - (OLD.exception IS NOT NULL AND OLD.status IN ('fail', 'error'))
    WHERE agent_id = OLD.agent_id;
END;

CREATE TRIGGER findings_counted_update AFTER UPDATE OF status, exception ON findings BEGIN
    UPDATE finding_counts SET
        pass = pass - (OLD.status = 'pass') + (NEW.status = 'pass'),
        fail = fail - (OLD.status = 'fail') + (NEW.status = 'fail'),
        error = error - (OLD.status = 'error') + (NEW.status = 'error'),
        not_applicable = not_applicable - (OLD.status = 'not_applicable') + (NEW.status = 'not_applicable'),
        accepted = accepted - (OLD.exception IS NOT NULL AND OLD.status IN ('fail', 'error'))
                            + (NEW.exception IS NOT NULL AND NEW.status IN ('fail', 'error'))
    WHERE agent_id = NEW.agent_id;
END;

-- (practice, rule) of a changed finding: drop its tally and count it again from `findings`
-- (the practice's agents through agents_by_site, each by the primary key).
CREATE TRIGGER findings_tallied_insert AFTER INSERT ON findings BEGIN
    DELETE FROM practice_rule_tallies WHERE rule = NEW.rule AND practice_id =
        (SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = NEW.agent_id);
    INSERT INTO practice_rule_tallies (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
    SELECT s.practice_id, f.rule,
           SUM(f.status = 'pass'),
           SUM(f.status = 'fail' AND f.exception IS NULL),
           SUM(f.status = 'error' AND f.exception IS NULL),
           SUM(f.status = 'not_applicable'),
           SUM(f.status IN ('fail', 'error') AND f.exception IS NOT NULL),
           MIN(CASE WHEN f.status IN ('fail', 'error') AND f.exception IS NULL THEN f.status_since END)
    FROM agents a0 JOIN sites s0 ON s0.id = a0.site_id
      JOIN sites s ON s.practice_id = s0.practice_id
      JOIN agents a ON a.site_id = s.id
      JOIN findings f ON f.agent_id = a.id AND f.rule = NEW.rule
    WHERE a0.id = NEW.agent_id
    GROUP BY s.practice_id, f.rule;
END;

CREATE TRIGGER findings_tallied_delete AFTER DELETE ON findings BEGIN
    DELETE FROM practice_rule_tallies WHERE rule = OLD.rule AND practice_id =
        (SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = OLD.agent_id);
    INSERT INTO practice_rule_tallies (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
    SELECT s.practice_id, f.rule,
           SUM(f.status = 'pass'),
           SUM(f.status = 'fail' AND f.exception IS NULL),
           SUM(f.status = 'error' AND f.exception IS NULL),
           SUM(f.status = 'not_applicable'),
           SUM(f.status IN ('fail', 'error') AND f.exception IS NOT NULL),
           MIN(CASE WHEN f.status IN ('fail', 'error') AND f.exception IS NULL THEN f.status_since END)
    FROM agents a0 JOIN sites s0 ON s0.id = a0.site_id
      JOIN sites s ON s.practice_id = s0.practice_id
      JOIN agents a ON a.site_id = s.id
      JOIN findings f ON f.agent_id = a.id AND f.rule = OLD.rule
    WHERE a0.id = OLD.agent_id
    GROUP BY s.practice_id, f.rule;
END;

CREATE TRIGGER findings_tallied_update AFTER UPDATE OF status, exception, status_since ON findings BEGIN
    DELETE FROM practice_rule_tallies WHERE rule = NEW.rule AND practice_id =
        (SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = NEW.agent_id);
    INSERT INTO practice_rule_tallies (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
    SELECT s.practice_id, f.rule,
           SUM(f.status = 'pass'),
           SUM(f.status = 'fail' AND f.exception IS NULL),
           SUM(f.status = 'error' AND f.exception IS NULL),
           SUM(f.status = 'not_applicable'),
           SUM(f.status IN ('fail', 'error') AND f.exception IS NOT NULL),
           MIN(CASE WHEN f.status IN ('fail', 'error') AND f.exception IS NULL THEN f.status_since END)
    FROM agents a0 JOIN sites s0 ON s0.id = a0.site_id
      JOIN sites s ON s.practice_id = s0.practice_id
      JOIN agents a ON a.site_id = s.id
      JOIN findings f ON f.agent_id = a.id AND f.rule = NEW.rule
    WHERE a0.id = NEW.agent_id
    GROUP BY s.practice_id, f.rule;
END;

-- What is stored already.
INSERT INTO finding_counts (agent_id, pass, fail, error, not_applicable, accepted)
SELECT agent_id, SUM(status = 'pass'), SUM(status = 'fail'), SUM(status = 'error'), SUM(status = 'not_applicable'),
       SUM(exception IS NOT NULL AND status IN ('fail', 'error'))
FROM findings GROUP BY agent_id;
INSERT INTO practice_rule_tallies (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
SELECT s.practice_id, f.rule,
       SUM(f.status = 'pass'),
       SUM(f.status = 'fail' AND f.exception IS NULL),
       SUM(f.status = 'error' AND f.exception IS NULL),
       SUM(f.status = 'not_applicable'),
       SUM(f.status IN ('fail', 'error') AND f.exception IS NOT NULL),
       MIN(CASE WHEN f.status IN ('fail', 'error') AND f.exception IS NULL THEN f.status_since END)
FROM findings f JOIN agents a ON a.id = f.agent_id JOIN sites s ON s.id = a.site_id
GROUP BY s.practice_id, f.rule;
