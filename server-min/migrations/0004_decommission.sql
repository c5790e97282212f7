-- Nexa bridge schema, version 4: decommissioning.

-- Set when an operator decommissioned the device (state 'decommissioned'): it never enrolls
-- or renews again, and its WireGuard address stays reserved.
ALTER TABLE devices ADD COLUMN decommissioned_at BIGINT;

-- Set when step-ca confirmed the revocation of this certificate (`POST /1.0/revoke`). With the
-- built-in CA, status 'revoked' alone puts a certificate on the CRL (`GET /api/crl`).
ALTER TABLE certificates ADD COLUMN stepca_revoked_at BIGINT;
CREATE INDEX certificates_by_status ON certificates (status);

-- The progress of a decommission, one row per device and step, so a re-run does only what
-- is left. Steps: 'mark_decommissioned', 'wireguard_peer', 'revoke_certificate',
-- 'hawkbit_target', 'audit'.
CREATE TABLE decommission_steps (
    device_id  TEXT NOT NULL REFERENCES devices(id),
    step       TEXT NOT NULL,
    done_at    BIGINT,                          -- NULL until the step succeeded
    attempts   BIGINT NOT NULL DEFAULT 0,       -- failed attempts, over all runs
    last_error TEXT,                            -- the last failure, for people
    PRIMARY KEY (device_id, step)
);
