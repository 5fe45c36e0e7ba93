-- PostgreSQL translation of store/sqlite/migrations/0007_security.sql (issue 17): same tables, columns and order.
-- Security (issue 15): revocation of agents and API keys, API-key expiry.
-- An agent keeps its row and history when revoked; `revoked` (from 0001) refuses it, and
-- `revoked_at` says when. An API key keeps its row (the audit log names its label); revoked or
-- expired keys are refused. Removed users are deleted with their sessions (the audit log keeps
-- who removed whom).
ALTER TABLE agents ADD COLUMN revoked_at BIGINT;
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT;
