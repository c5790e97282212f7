-- Nexa bridge schema, version 1.
-- Portable SQL: it runs unchanged on SQLite and PostgreSQL (TEXT, BIGINT, no AUTOINCREMENT,
-- no engine-specific functions). Times are Unix seconds (audit: milliseconds).

-- A device known to the bridge. Registered by an operator (`device add`), enrolled by itself.
CREATE TABLE devices (
    id               TEXT PRIMARY KEY,            -- device id (shared rule, nexa-proto)
    state            TEXT NOT NULL,               -- 'registered' | 'enrolled'
    note             TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    machine_uid      TEXT,
    hostname         TEXT,
    ec_spki_sha256   TEXT,                        -- hex SHA-256 of the enrolled EC public key
    wg_public_key    TEXT UNIQUE,                 -- base64; never two devices with one key
    wg_host          BIGINT UNIQUE,               -- host index in the WireGuard subnet
    profile_revision BIGINT NOT NULL DEFAULT 0,
    cert_serial      TEXT,
    cert_not_after   BIGINT,
    enrolled_at      BIGINT,
    reenroll_until   BIGINT,                      -- one-time re-enrollment window, NULL = closed
    generation       BIGINT NOT NULL DEFAULT 0    -- bumped by every enrollment (compare-and-set)
);

-- Every certificate ever issued, so a superseded one can be found and later revoked.
CREATE TABLE certificates (
    serial        TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL REFERENCES devices(id),
    not_before    BIGINT NOT NULL,
    not_after     BIGINT NOT NULL,
    issued_at     BIGINT NOT NULL,
    status        TEXT NOT NULL,                  -- 'active' | 'superseded'
    superseded_at BIGINT
);
CREATE INDEX certificates_by_device ON certificates (device_id, status);

-- Append-only audit trail.
CREATE TABLE audit_events (
    id        TEXT PRIMARY KEY,                   -- random 128-bit hex
    at_ms     BIGINT NOT NULL,
    actor     TEXT NOT NULL,                      -- 'device:<id>' | 'operator:<user>'
    action    TEXT NOT NULL,                      -- e.g. 'device.enrolled'
    device_id TEXT,
    source    TEXT,                               -- client address or 'cli'
    detail    TEXT NOT NULL                       -- JSON object
);
CREATE INDEX audit_events_by_time ON audit_events (at_ms);
CREATE INDEX audit_events_by_device ON audit_events (device_id, at_ms);

-- Settings pinned at first start (e.g. the WireGuard subnet, which must not silently change).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
