-- Nexa bridge schema, version 6: who may enroll.
-- Sites and their enrollment keys (zero-touch), the pending enrollments of the collision gate,
-- field-tech users and their tokens. Booleans are BIGINT 0/1 (portable).

-- A place devices are installed at. `site_code` is what a device image is configured with.
CREATE TABLE sites (
    id         TEXT PRIMARY KEY,                  -- random 128-bit hex
    tenant     TEXT NOT NULL DEFAULT 'default',
    site_code  TEXT NOT NULL,
    name       TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX sites_by_code ON sites (tenant, site_code);

-- A site's enrollment keys, every version ever minted; at most one active. Only a keyed hash
-- of the key is stored (HMAC-SHA-256 with the data directory's pepper).
CREATE TABLE site_enrollment_keys (
    site_id        TEXT NOT NULL REFERENCES sites(id),
    version        BIGINT NOT NULL,               -- 1, 2, ... per site, never reused
    key_hash       TEXT NOT NULL,                 -- hex HMAC-SHA-256(pepper, key)
    fingerprint    TEXT NOT NULL,                 -- 4 upper-case hex, for support calls
    active         BIGINT NOT NULL,               -- 1 = the key devices may use
    created_at     BIGINT NOT NULL,
    deactivated_at BIGINT,
    created_by     TEXT NOT NULL,
    PRIMARY KEY (site_id, version)
);
CREATE UNIQUE INDEX site_enrollment_keys_one_active ON site_enrollment_keys (site_id) WHERE active = 1;

-- Devices belong to a tenant and, once enrolled with a site key, to a site. `last_seen_at` is
-- the last time the device proved itself (enrollment, renewal, broker connect): the collision
-- gate asks whether a device is "recently online".
ALTER TABLE devices ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE devices ADD COLUMN site_id TEXT REFERENCES sites(id);
ALTER TABLE devices ADD COLUMN last_seen_at BIGINT;
CREATE INDEX devices_by_machine ON devices (tenant, machine_uid);
CREATE INDEX devices_by_site ON devices (site_id);

-- Enrollments held by the collision gate: a machine that looks like an enrolled, recently
-- online device asked for a certificate with other keys. No certificate is issued until an
-- administrator approves; the device's next identical request then completes.
CREATE TABLE pending_enrollments (
    id             TEXT PRIMARY KEY,              -- random 64-bit hex, for people
    device_id      TEXT NOT NULL REFERENCES devices(id),
    site_id        TEXT REFERENCES sites(id),
    machine_uid    TEXT,
    hostname       TEXT,
    ec_spki_sha256 TEXT NOT NULL,
    wg_public_key  TEXT NOT NULL,
    source         TEXT,
    reason         TEXT NOT NULL,                 -- why the gate held it, for people
    state          TEXT NOT NULL,                 -- 'pending' | 'approved' | 'rejected' | 'completed'
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,               -- the device's latest poll
    decided_by     TEXT,
    decided_at     BIGINT,
    completed_at   BIGINT
);
CREATE UNIQUE INDEX pending_by_keys ON pending_enrollments (device_id, ec_spki_sha256, wg_public_key);
CREATE INDEX pending_by_state ON pending_enrollments (state, created_at);

-- People: administrators and field technicians. Passwords are Argon2id PHC strings.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,               -- random 128-bit hex
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,                  -- 'admin' | 'technician'
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);

-- Issued access and refresh tokens, stored as SHA-256 of the token (256-bit random). A
-- refresh token is spent when used; `family` ties the tokens of one login together so a
-- replayed refresh token revokes them all.
CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    kind       TEXT NOT NULL,                     -- 'access' | 'refresh'
    family     TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX auth_tokens_by_user ON auth_tokens (user_id);
CREATE INDEX auth_tokens_by_family ON auth_tokens (family);
CREATE INDEX auth_tokens_by_expiry ON auth_tokens (expires_at);
