-- Nexa bridge schema, version 2: revocation, and the change counter of the gateway's peer set.

-- Set when an operator revokes the device; a revoked device never enrolls again.
ALTER TABLE devices ADD COLUMN revoked_at BIGINT;
-- Set when the certificate was revoked with its device ('revoked' status).
ALTER TABLE certificates ADD COLUMN revoked_at BIGINT;

-- One row. Bumped by every change to the set of gateway peers made outside the serving
-- process (e.g. `nexa-server device revoke`); the gateway manager polls it and reconciles.
CREATE TABLE peer_set (
    id      BIGINT PRIMARY KEY,                  -- always 1
    version BIGINT NOT NULL
);
INSERT INTO peer_set (id, version) VALUES (1, 0);
