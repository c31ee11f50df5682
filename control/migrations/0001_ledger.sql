-- The ledger's schema. The same text runs on SQLite and Postgres: every number is BIGINT, times
-- are epoch milliseconds, booleans are 0/1 BIGINTs, and doubles use a name both understand.

-- Raw usage records, one per proxied request, purged after the retention period.
CREATE TABLE records (
    id                 TEXT PRIMARY KEY,
    v                  BIGINT NOT NULL,
    time_ms            BIGINT NOT NULL,
    org                TEXT,
    key_id             TEXT,
    provider           TEXT,
    model              TEXT,
    upstream_model     TEXT,
    api                TEXT NOT NULL,
    stream             BIGINT NOT NULL, -- 0 or 1: sqlx's any driver maps no SQLite boolean
    status             BIGINT NOT NULL,
    outcome            TEXT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    estimated          BIGINT NOT NULL, -- 0 or 1
    cost_micro_usd     BIGINT NOT NULL,
    ttft_ms            DOUBLE PRECISION,
    total_ms           DOUBLE PRECISION NOT NULL,
    upstream_ms        DOUBLE PRECISION,
    bytes_in           BIGINT NOT NULL,
    bytes_out          BIGINT NOT NULL,
    user_tag           TEXT,
    session_tag        TEXT,
    feature_tag        TEXT,
    -- The `meta` tags as a JSON object, NULL when there are none.
    meta               TEXT,
    -- Only when a deployment records it; purged sooner than the record.
    client_ip          TEXT,
    -- When the ledger stored the record (its own clock).
    received_ms        BIGINT NOT NULL
);

-- Export and erasure walk one org's records in time order.
CREATE INDEX records_org_time ON records (org, time_ms, id);
-- Retention deletes by age.
CREATE INDEX records_time ON records (time_ms);

-- Billing aggregates per hour over every dimension a usage query can group by. Absent values
-- are stored as '' so the key has no NULLs (NULLs never conflict in a unique key).
CREATE TABLE usage_hourly (
    org                TEXT NOT NULL,
    hour_ms            BIGINT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    key_id             TEXT NOT NULL,
    user_tag           TEXT NOT NULL,
    session_tag        TEXT NOT NULL,
    feature_tag        TEXT NOT NULL,
    status             BIGINT NOT NULL,
    requests           BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost_micro_usd     BIGINT NOT NULL,
    PRIMARY KEY (org, hour_ms, provider, model, key_id, user_tag, session_tag, feature_tag, status)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour_ms);

-- Billing aggregates per org and UTC day: the spend feed reads these.
CREATE TABLE usage_daily (
    org                TEXT NOT NULL,
    day_ms             BIGINT NOT NULL,
    requests           BIGINT NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cached_tokens      BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens   BIGINT NOT NULL,
    cost_micro_usd     BIGINT NOT NULL,
    PRIMARY KEY (org, day_ms)
);
CREATE INDEX usage_daily_day ON usage_daily (day_ms);
