-- What a provider reported when it failed inside a successful stream (outcome `stream_error`),
-- e.g. `overloaded_error`; NULL for every other record.
ALTER TABLE records ADD COLUMN error_type TEXT;
