-- The rollups' lower time bound (all flavors since 015; see the timescale part): spans dated before
-- ts_floor are not added to the rollups, because the rollups already hold what an earlier mechanism
-- counted for those buckets. '-infinity' here: the native rollups have always been kept by the
-- maintenance task.
ALTER TABLE rollup_watermarks ADD COLUMN ts_floor timestamptz NOT NULL DEFAULT '-infinity';
COMMENT ON COLUMN rollup_watermarks.ts_floor IS 'spans dated before this are not rolled up (buckets before it came from an earlier mechanism)';
