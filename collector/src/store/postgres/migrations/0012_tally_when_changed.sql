-- The dashboard's counts (0011) are recounted only when what they count changed (issue 16):
-- an upsert that rewrites a finding's evidence sets status, exception and status_since to the
-- values they had, and the update trigger recounted the practice's tally for it each time.
DROP TRIGGER findings_counted_update ON findings;
CREATE TRIGGER findings_counted_update AFTER UPDATE OF status, exception, status_since ON findings
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.exception IS DISTINCT FROM NEW.exception
          OR OLD.status_since IS DISTINCT FROM NEW.status_since)
    EXECUTE FUNCTION rounds_findings_counted();
