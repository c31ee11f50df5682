-- The upstream pool target that served a record (its endpoint's `scheme://host/path` and its
-- provider's region; NULL when not configured or when sluice answered itself) and the number of
-- upstream attempts (above 1: the request failed over).
ALTER TABLE records ADD COLUMN endpoint TEXT;
ALTER TABLE records ADD COLUMN region TEXT;
ALTER TABLE records ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
