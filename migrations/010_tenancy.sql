-- Tenancy (all flavors). Every row of the signal tables carries the project of the API key that sent it
-- (NULL with auth.mode = none, and on rows stored before this migration): the read API and the rollups
-- select and group by it. No foreign key: rows outlive their project, and a COPY must not pay a lookup
-- per row. Adding a nullable column without a default rewrites nothing (existing rows read NULL).
ALTER TABLE llm_traces ADD COLUMN project_id uuid;
ALTER TABLE llm_metrics ADD COLUMN project_id uuid;
ALTER TABLE llm_logs ADD COLUMN project_id uuid;
COMMENT ON COLUMN llm_traces.project_id IS 'project (tenant) of the API key that sent the span; NULL with auth off';
COMMENT ON COLUMN llm_metrics.project_id IS 'project (tenant) of the API key that sent the point; NULL with auth off';
COMMENT ON COLUMN llm_logs.project_id IS 'project (tenant) of the API key that sent the record; NULL with auth off';

-- Per-key rate limits in items (spans + metric points + log records) per second, enforced by the
-- receiver as a token bucket (`keys create --rate`). NULL: no limit. (rate_limit_per_minute, from the
-- seeds' schema, is not used by the receiver.)
ALTER TABLE api_keys ADD COLUMN rate_items_per_s double precision CHECK (rate_items_per_s > 0);
COMMENT ON COLUMN api_keys.rate_items_per_s IS 'items per second this key may send (token bucket); NULL = unlimited';
COMMENT ON COLUMN api_keys.rate_limit_per_minute IS 'unused by the receiver (see rate_items_per_s)';
