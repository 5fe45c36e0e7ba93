-- PostgreSQL translation of store/sqlite/migrations/0009_tamper_ack.sql (issue 17): same tables, columns and order.
-- Tamper acknowledgement (core, issue 11).
--
-- `tamper_events`: every tamper event an agent's audit-log check reported (`tamper` or
-- `last_tamper` of an `audit.log` observation), recorded once per (agent, id) with what the
-- agent said at first sight. An event is open until a person acknowledges it; the
-- acknowledgement (who, when, why) is written once and never replaced. While an agent has an
-- open event, its `hipaa.audit.log_integrity` finding is held failing.
CREATE TABLE tamper_events (
    agent_id TEXT NOT NULL REFERENCES agents(id),
    tamper_id TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    detected_at BIGINT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    event TEXT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    ack_reason TEXT,
    PRIMARY KEY (agent_id, tamper_id)
);
-- An acknowledgement is written once: it cannot be changed or removed afterwards.
CREATE FUNCTION tamper_ack_is_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.acknowledged_at IS NOT NULL THEN
        RAISE EXCEPTION 'a tamper acknowledgement is kept as written' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tamper_ack_is_kept BEFORE UPDATE OF acknowledged_at, acknowledged_by, ack_reason ON tamper_events
FOR EACH ROW EXECUTE FUNCTION tamper_ack_is_kept();
