-- Nexa bridge schema, version 3: the device's hawkBit target.

-- Set once hawkBit confirmed the device's target exists (created, or 409 already there), so a
-- device reconnecting to the broker does not cost hawkBit a call each time.
ALTER TABLE devices ADD COLUMN hawkbit_target_at BIGINT;
