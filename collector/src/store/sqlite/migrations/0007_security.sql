-- Security (issue 15): revocation of agents and API keys, API-key expiry.
-- An agent keeps its row and history when revoked; `revoked` (from 0001) refuses it, and
-- `revoked_at` says when. An API key keeps its row (the audit log names its label); revoked or
-- expired keys are refused. Removed users are deleted with their sessions (the audit log keeps
-- who removed whom).
ALTER TABLE agents ADD COLUMN revoked_at INTEGER;
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER;
