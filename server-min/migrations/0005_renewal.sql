-- Renewal: a certificate issued by renewal remembers the one it replaced, so a device whose
-- renewal answer was lost can renew again with the certificate it still holds.
ALTER TABLE certificates ADD COLUMN renewed_from TEXT;
