-- The dashboard's counts (0011) are recounted only when what they count changed (issue 16).
--
-- Every report rewrites the findings whose evidence moved (an age, a free-space figure), and
-- the upsert sets status, exception and status_since to the values they already had. SQLite
-- fires `AFTER UPDATE OF col` triggers whether or not a value changed, so each such rewrite
-- recounted its (practice, rule) tally over every agent of the practice: at 10,000 agents that
-- tripled the collector's CPU. The same triggers, now only when a counted value differs.
DROP TRIGGER findings_counted_update;
CREATE TRIGGER findings_counted_update AFTER UPDATE OF status, exception ON findings
WHEN OLD.status IS NOT NEW.status OR OLD.exception IS NOT NEW.exception
BEGIN
    UPDATE finding_counts SET
        pass = pass - (OLD.status = 'pass') + (NEW.status = 'pass'),
        fail = fail - (OLD.status = 'fail') + (NEW.status = 'fail'),
        error = error - (OLD.status = 'error') + (NEW.status = 'error'),
        not_applicable = not_applicable - (OLD.status = 'not_applicable') + (NEW.status = 'not_applicable'),
        accepted = accepted - (OLD.exception IS NOT NULL AND OLD.status IN ('fail', 'error'))
                            + (NEW.exception IS NOT NULL AND NEW.status IN ('fail', 'error'))
    WHERE agent_id = NEW.agent_id;
END;

DROP TRIGGER findings_tallied_update;
CREATE TRIGGER findings_tallied_update AFTER UPDATE OF status, exception, status_since ON findings
WHEN OLD.status IS NOT NEW.status OR OLD.exception IS NOT NEW.exception
  OR OLD.status_since IS NOT NEW.status_since
BEGIN
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
