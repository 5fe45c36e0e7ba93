-- Incident lists by source, newest first (issue 16): the alert engine asks for a site's last
-- 20 `site_offline` incidents at every probe report, and the API and dashboard filter by
-- source. Without this index each such list scanned every incident ever opened.
CREATE INDEX incidents_by_source ON incidents (source, id);
