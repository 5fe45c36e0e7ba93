-- Policy settings per practice (`site_id` NULL) and per site: the pack profile (practice level
-- only) and the overrides TOML text, as set by `rounds-collector policy set`.
CREATE TABLE policy_settings (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('practice', 'site')),
    practice_id INTEGER NOT NULL REFERENCES practices(id),
    site_id INTEGER REFERENCES sites(id),
    profile TEXT,
    overrides_toml TEXT,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    CHECK ((scope = 'practice' AND site_id IS NULL)
        OR (scope = 'site' AND site_id IS NOT NULL AND profile IS NULL))
);
CREATE UNIQUE INDEX policy_settings_per_practice ON policy_settings (practice_id) WHERE site_id IS NULL;
CREATE UNIQUE INDEX policy_settings_per_site ON policy_settings (site_id) WHERE site_id IS NOT NULL;
