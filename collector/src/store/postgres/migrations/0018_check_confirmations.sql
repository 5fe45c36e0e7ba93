-- Ingest (core, issue 7): SQLite keeps the confirmation of a check's complete run once per
-- (agent, check) instead of on each unchanged row (its migration 0018 says how). PostgreSQL
-- confirms every row of a report as before, but holds the same table and column so that a
-- transfer carries a SQLite store whole; an import folds the confirmations into the rows they
-- cover (`store/transfer.rs`), and the rows PostgreSQL writes take their check's epoch.
CREATE TABLE check_confirmations (
    agent_id TEXT NOT NULL,
    check_name TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    observed_at BIGINT NOT NULL,
    confirmed_at BIGINT NOT NULL,
    future_dated BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, check_name)
);
ALTER TABLE latest_observations ADD COLUMN check_epoch BIGINT NOT NULL DEFAULT 0;
