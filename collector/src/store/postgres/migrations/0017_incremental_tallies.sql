-- The practice tallies (0011) kept by adding and removing the changed finding instead of
-- counting the (practice, rule) again over every agent of the practice (core, issue 7: ingest
-- of new agents; the SQLite migration of the same number says what the recount cost). The
-- counts move by one; `bad_since` moves to an earlier time at once, and is counted again from
-- `findings` only when the finding that leaves was the oldest unaccepted failing or erroring
-- one. A tally whose findings are all gone is removed, as the recount removed it.

-- +1 / -1 of one finding row in the tally of practice `p`.
CREATE OR REPLACE FUNCTION rounds_tally_finding(p BIGINT, r TEXT, st TEXT, exc TEXT, since BIGINT, d INT)
RETURNS void AS $$
DECLARE
    bad BOOLEAN := st IN ('fail', 'error') AND exc IS NULL;
BEGIN
    IF d > 0 THEN
        INSERT INTO practice_rule_tallies AS t (practice_id, rule, pass, fail, error, not_applicable, accepted, bad_since)
        VALUES (p, r,
                (st = 'pass')::int,
                (st = 'fail' AND exc IS NULL)::int,
                (st = 'error' AND exc IS NULL)::int,
                (st = 'not_applicable')::int,
                (st IN ('fail', 'error') AND exc IS NOT NULL)::int,
                CASE WHEN bad THEN since END)
        ON CONFLICT (practice_id, rule) DO UPDATE SET
            pass = t.pass + excluded.pass, fail = t.fail + excluded.fail, error = t.error + excluded.error,
            not_applicable = t.not_applicable + excluded.not_applicable, accepted = t.accepted + excluded.accepted,
            bad_since = LEAST(t.bad_since, excluded.bad_since);
        RETURN;
    END IF;
    UPDATE practice_rule_tallies t SET
        pass = t.pass - (st = 'pass')::int,
        fail = t.fail - (st = 'fail' AND exc IS NULL)::int,
        error = t.error - (st = 'error' AND exc IS NULL)::int,
        not_applicable = t.not_applicable - (st = 'not_applicable')::int,
        accepted = t.accepted - (st IN ('fail', 'error') AND exc IS NOT NULL)::int,
        bad_since = CASE WHEN bad AND t.bad_since = since THEN
                (SELECT MIN(f.status_since) FROM sites s JOIN agents a ON a.site_id = s.id
                   JOIN findings f ON f.agent_id = a.id AND f.rule = r
                 WHERE s.practice_id = p AND f.status IN ('fail', 'error') AND f.exception IS NULL)
            ELSE t.bad_since END
    WHERE t.practice_id = p AND t.rule = r;
    DELETE FROM practice_rule_tallies
    WHERE practice_id = p AND rule = r
      AND pass = 0 AND fail = 0 AND error = 0 AND not_applicable = 0 AND accepted = 0;
END;
$$ LANGUAGE plpgsql;

-- On an update the old finding leaves first (its recount, when it was the oldest, already sees
-- the new one), then the new one is added.
-- The agent's practice is looked up once per changed row.
CREATE OR REPLACE FUNCTION rounds_findings_counted() RETURNS trigger AS $$
DECLARE
    p BIGINT;
BEGIN
    SELECT s.practice_id INTO p FROM agents a JOIN sites s ON s.id = a.site_id
    WHERE a.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.agent_id ELSE NEW.agent_id END;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM rounds_count_finding(OLD.agent_id, OLD.status, OLD.exception, -1);
        IF p IS NOT NULL THEN
            PERFORM rounds_tally_finding(p, OLD.rule, OLD.status, OLD.exception, OLD.status_since, -1);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM rounds_count_finding(NEW.agent_id, NEW.status, NEW.exception, 1);
        IF p IS NOT NULL THEN
            PERFORM rounds_tally_finding(p, NEW.rule, NEW.status, NEW.exception, NEW.status_since, 1);
        END IF;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Counted once more from what is stored, so the tallies the trigger moves start exact.
DELETE FROM practice_rule_tallies;
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
