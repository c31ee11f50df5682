-- Keys and orgs an operator suspended pending review: while a row is here, every proxy refuses
-- the subject (the spend feed carries the list). Lifting a suspension deletes its row; the audit
-- log keeps the history.
CREATE TABLE suspensions (
    kind     TEXT NOT NULL, -- 'key' (a key id, key_...) or 'org'
    subject  TEXT NOT NULL,
    reason   TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);

-- Every operator and org-admin action: who, what, on what, when, from where. Kept 90 days.
CREATE TABLE audit (
    id        TEXT PRIMARY KEY, -- a UUIDv7: ids sort by time
    time_ms   BIGINT NOT NULL,
    actor     TEXT NOT NULL,    -- 'operator', or the org-admin token's name
    action    TEXT NOT NULL,    -- e.g. 'suspension.set', 'org.export'
    subject   TEXT,             -- what it was done to (an org, a key id)
    detail    TEXT,             -- a short operator-written reason or parameters, never content
    source_ip TEXT              -- the caller's address as the ledger saw it
);
CREATE INDEX audit_time ON audit (time_ms, id);

-- Abuse flags: an hour of unusual volume for one key, org or client IP, with its evidence and
-- its review. One per subject, hour and metric; kept 90 days like the audit log.
CREATE TABLE flags (
    id           TEXT PRIMARY KEY,     -- a UUIDv7
    kind         TEXT NOT NULL,        -- 'key', 'org' or 'ip'
    subject      TEXT NOT NULL,
    hour_ms      BIGINT NOT NULL,
    metric       TEXT NOT NULL,        -- 'requests' or 'tokens'
    value        BIGINT NOT NULL,
    median       DOUBLE PRECISION NOT NULL,
    mad          DOUBLE PRECISION NOT NULL,
    bar          DOUBLE PRECISION NOT NULL,
    by_threshold BIGINT NOT NULL,      -- 0 or 1
    status       TEXT NOT NULL,        -- 'open', 'dismissed' or 'suspended'
    raised_ms    BIGINT NOT NULL,
    reviewed_ms  BIGINT,
    note         TEXT
);
CREATE UNIQUE INDEX flags_subject_hour ON flags (kind, subject, hour_ms, metric);
CREATE INDEX flags_status ON flags (status, raised_ms);

-- Org-admin tokens: an operator creates one for an org; it reads only that org's usage and
-- export. Only the SHA-256 of the token is stored; revoking keeps the row for the record.
CREATE TABLE org_tokens (
    id         TEXT PRIMARY KEY,      -- 'otk_' and a UUIDv7
    org        TEXT NOT NULL,
    name       TEXT NOT NULL,
    digest     TEXT NOT NULL UNIQUE,  -- hex SHA-256 of the token
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
