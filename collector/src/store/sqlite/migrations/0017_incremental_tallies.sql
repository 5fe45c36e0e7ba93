-- The practice tallies (0011) kept by adding and removing the changed finding instead of
-- counting the (practice, rule) again over every agent of the practice (core, issue 7: ingest
-- of new agents). A recount cost a scan of the practice's agents for each finding written: an
-- agent's first report writes every rule's finding, so 1,000 new agents of one practice
-- reporting at once took about 12 ms of the writer per report (65 M instructions) and the
-- collector stored under 100 reports/s. The counts now move by one; `bad_since` (the oldest
-- unaccepted failing or erroring finding) moves to an earlier time at once, and is counted
-- again from `findings` only when the finding that leaves was that oldest one. A tally whose
-- findings are all gone is removed, as the recount removed it.
DROP TRIGGER findings_tallied_insert;
DROP TRIGGER findings_tallied_delete;
DROP TRIGGER findings_tallied_update;

CREATE TRIGGER findings_tallied_insert AFTER INSERT ON findings BEGIN
    INSERT INTO practice_rule_tallies (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
    SELECT s.practice_id, NEW.rule,
           NEW.status = 'pass',
           NEW.status = 'fail' AND NEW.exception IS NULL,
           NEW.status = 'error' AND NEW.exception IS NULL,
           NEW.status = 'not_applicable',
           NEW.status IN ('fail', 'error') AND NEW.exception IS NOT NULL,
           CASE WHEN NEW.status IN ('fail', 'error') AND NEW.exception IS NULL THEN NEW.status_since END
    FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = NEW.agent_id
    ON CONFLICT (practice_id, rule) DO UPDATE SET
        pass = pass + excluded.pass, fail = fail + excluded.fail, error = error + excluded.error,
        not_applicable = not_applicable + excluded.not_applicable, accepted = accepted + excluded.accepted,
        bad_since = MIN(COALESCE(bad_since, excluded.bad_since), COALESCE(excluded.bad_since, bad_since));
END;

CREATE TRIGGER findings_tallied_delete AFTER DELETE ON findings BEGIN
    UPDATE practice_rule_tallies SET
        pass = pass - (OLD.status = 'pass'),
        fail = fail - (OLD.status = 'fail' AND OLD.exception IS NULL),
        error = error - (OLD.status = 'error' AND OLD.exception IS NULL),
        not_applicable = not_applicable - (OLD.status = 'not_applicable'),
        accepted = accepted - (OLD.status IN ('fail', 'error') AND OLD.exception IS NOT NULL),
        bad_since = CASE WHEN OLD.status IN ('fail', 'error') AND OLD.exception IS NULL AND bad_since = OLD.status_since
            THEN (SELECT MIN(f.status_since) FROM sites s JOIN agents a ON a.site_id = s.id
                JOIN findings f ON f.agent_id = a.id AND f.rule = OLD.rule
                WHERE s.practice_id = practice_rule_tallies.practice_id
                  AND f.status IN ('fail', 'error') AND f.exception IS NULL)
            ELSE bad_since END
    WHERE rule = OLD.rule AND practice_id = (SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = OLD.agent_id);
    DELETE FROM practice_rule_tallies
    WHERE rule = OLD.rule AND practice_id = (SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = OLD.agent_id)
      AND pass = 0 AND fail = 0 AND error = 0 AND not_applicable = 0 AND accepted = 0;
END;

-- The old finding leaves (its recount, when it was the oldest, already sees the new one), then
-- the new one is added.
CREATE TRIGGER findings_tallied_update AFTER UPDATE OF status, exception, status_since ON findings
WHEN OLD.status IS NOT NEW.status OR OLD.exception IS NOT NEW.exception
  OR OLD.status_since IS NOT NEW.status_since
BEGIN
    UPDATE practice_rule_tallies SET
        pass = pass - (OLD.status = 'pass'),
        fail = fail - (OLD.status = 'fail' AND OLD.exception IS NULL),
        error = error - (OLD.status = 'error' AND OLD.exception IS NULL),
        not_applicable = not_applicable - (OLD.status = 'not_applicable'),
        accepted = accepted - (OLD.status IN ('fail', 'error') AND OLD.exception IS NOT NULL),
        bad_since = CASE WHEN OLD.status IN ('fail', 'error') AND OLD.exception IS NULL AND bad_since = OLD.status_since
            THEN (SELECT MIN(f.status_since) FROM sites s JOIN agents a ON a.site_id = s.id
                JOIN findings f ON f.agent_id = a.id AND f.rule = OLD.rule
                WHERE s.practice_id = practice_rule_tallies.practice_id
                  AND f.status IN ('fail', 'error') AND f.exception IS NULL)
            ELSE bad_since END
    WHERE rule = OLD.rule AND practice_id = (SELECT s.practice_id FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = OLD.agent_id);
    INSERT INTO practice_rule_tallies (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
    SELECT s.practice_id, NEW.rule,
           NEW.status = 'pass',
           NEW.status = 'fail' AND NEW.exception IS NULL,
           NEW.status = 'error' AND NEW.exception IS NULL,
           NEW.status = 'not_applicable',
           NEW.status IN ('fail', 'error') AND NEW.exception IS NOT NULL,
           CASE WHEN NEW.status IN ('fail', 'error') AND NEW.exception IS NULL THEN NEW.status_since END
    FROM agents a JOIN sites s ON s.id = a.site_id WHERE a.id = NEW.agent_id
    ON CONFLICT (practice_id, rule) DO UPDATE SET
        pass = pass + excluded.pass, fail = fail + excluded.fail, error = error + excluded.error,
        not_applicable = not_applicable + excluded.not_applicable, accepted = accepted + excluded.accepted,
        bad_since = MIN(COALESCE(bad_since, excluded.bad_since), COALESCE(excluded.bad_since, bad_since));
END;

-- Counted once more from what is stored, so the tallies the new triggers move start exact.
DELETE FROM practice_rule_tallies;
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
