-- TimescaleDB flavor: the rollups are kept by the maintenance task, as in the native flavor
-- (receiver/storage/rollups.py), instead of continuous aggregates. Their stores become hypertables
-- (bucket-partitioned, dropped by retention policies); the views are the native flavor's.
--
-- Why: a continuous aggregate recomputes every bucket a refresh finds changed, from its source. At
-- 10K spans/s (soak, README "Soak") the per-user hourly aggregate re-read the whole current hour of raw
-- spans every 5 minutes (72 s per refresh 6 minutes into the hour, growing to the hour's ~36M spans at
-- its end), and the 1-minute aggregate re-read the open minutes every 30 s (~20 s of a core per 30 s):
-- PostgreSQL CPU per span grew 32% in 14 minutes and ingestion fell to 88% of the offered rate. The
-- incremental rollups read each span once, when ingested (brin (ingested_at)), and add it to the four
-- stores: their cost per span is flat however long the bucket or the table.
--
-- Kept from the continuous aggregates: every rollup row of a bucket before the floor F (the start of the
-- UTC day 6 days ago; '-infinity' when they were empty, as on a fresh install). Buckets from F on are
-- recomputed from the raw spans by the first maintenance passes (rollup_watermarks starts at
-- -infinity, ts_floor = F, so older spans are not counted twice). Raw spans are kept 90 days and
-- compressed after 7, so F's 6 days are all uncompressed.
SELECT remove_retention_policy('llm_metrics_1min_history');
SELECT remove_retention_policy('llm_metrics_1hour_history');
SELECT remove_retention_policy('llm_metrics_1day_history');
SELECT remove_retention_policy('cost_analysis_hourly_history');

CREATE TABLE _rollup_floor AS
SELECT CASE WHEN EXISTS (SELECT 1 FROM llm_metrics_1min_store) OR EXISTS (SELECT 1 FROM llm_metrics_1hour_store)
                 OR EXISTS (SELECT 1 FROM llm_metrics_1day_store) OR EXISTS (SELECT 1 FROM cost_analysis_hourly_store)
                 OR EXISTS (SELECT 1 FROM llm_metrics_1min_history) OR EXISTS (SELECT 1 FROM llm_metrics_1hour_history)
                 OR EXISTS (SELECT 1 FROM llm_metrics_1day_history) OR EXISTS (SELECT 1 FROM cost_analysis_hourly_history)
            THEN date_trunc('day', now() - INTERVAL '6 days', 'UTC')
            ELSE '-infinity'::timestamptz END AS floor,
       -- migration 010's cutover between *_history (older buckets) and the continuous aggregates
       coalesce(substring(obj_description('llm_metrics_1min_history'::regclass, 'pg_class')
                          FROM 'for buckets before (.+) \(no project\)')::timestamptz,
                '-infinity'::timestamptz) AS cutover;

CREATE TABLE _new_llm_metrics_1min_store (
    bucket            timestamptz      NOT NULL,
    project_id        uuid,
    provider          text,
    model             text,
    service_name      text,
    request_count     bigint           NOT NULL,
    error_count       bigint           NOT NULL,
    input_tokens      numeric          NOT NULL,
    output_tokens     numeric          NOT NULL,
    total_tokens      numeric          NOT NULL,
    total_cost        numeric          NOT NULL,
    duration_sum_ms   double precision NOT NULL,
    duration_min_ms   double precision NOT NULL,
    duration_max_ms   double precision NOT NULL,
    latency_histogram bigint[]         NOT NULL
);
CREATE TABLE _new_llm_metrics_1hour_store (LIKE _new_llm_metrics_1min_store);
CREATE TABLE _new_llm_metrics_1day_store (LIKE _new_llm_metrics_1min_store);
CREATE TABLE _new_cost_analysis_hourly_store (
    bucket            timestamptz      NOT NULL,
    project_id        uuid,
    provider          text,
    model             text,
    service_name      text,
    user_id           text,
    environment       text,
    request_count     bigint           NOT NULL,
    error_count       bigint           NOT NULL,
    input_tokens      numeric          NOT NULL,
    output_tokens     numeric          NOT NULL,
    total_tokens      numeric          NOT NULL,
    input_cost        numeric          NOT NULL,
    output_cost       numeric          NOT NULL,
    total_cost        numeric          NOT NULL,
    duration_sum_ms   double precision NOT NULL,
    duration_min_ms   double precision NOT NULL,
    duration_max_ms   double precision NOT NULL,
    latency_histogram bigint[]         NOT NULL
);

DO $$
DECLARE
    floor timestamptz := (SELECT floor FROM _rollup_floor);
    cutover timestamptz := (SELECT cutover FROM _rollup_floor);
    columns text := 'provider, model, service_name, request_count, error_count, input_tokens, output_tokens, '
        'total_tokens, total_cost, duration_sum_ms, duration_min_ms, duration_max_ms, latency_histogram';
    cost_columns text := 'provider, model, service_name, user_id, environment, request_count, error_count, '
        'input_tokens, output_tokens, total_tokens, input_cost, output_cost, total_cost, duration_sum_ms, '
        'duration_min_ms, duration_max_ms, latency_histogram';
    view text;
BEGIN
    FOREACH view IN ARRAY ARRAY['llm_metrics_1min', 'llm_metrics_1hour', 'llm_metrics_1day', 'cost_analysis_hourly'] LOOP
        EXECUTE format(
            'INSERT INTO %1$I (bucket, project_id, %4$s)
             SELECT bucket, project_id, %4$s FROM %2$I WHERE bucket >= $1 AND bucket < $2
             UNION ALL
             SELECT bucket, NULL, %4$s FROM %3$I WHERE bucket < $1 AND bucket < $2',
            '_new_' || view || '_store', view || '_store', view || '_history',
            CASE WHEN view = 'cost_analysis_hourly' THEN cost_columns ELSE columns END)
        USING cutover, floor;
    END LOOP;
END
$$;

-- Who may read the views now (a reader role such as Grafana's): granted again on the new views below.
CREATE TEMP TABLE _view_readers ON COMMIT DROP AS
SELECT DISTINCT grantee, table_name FROM information_schema.role_table_grants
WHERE table_schema = current_schema() AND privilege_type = 'SELECT'
  AND table_name IN ('llm_metrics_1min', 'llm_metrics_1hour', 'llm_metrics_1day', 'cost_analysis_hourly')
  AND grantee <> current_user;

DROP VIEW llm_metrics_1min, llm_metrics_1hour, llm_metrics_1day, cost_analysis_hourly;
DROP MATERIALIZED VIEW llm_metrics_1day_store;  -- built from 1hour, which is built from 1min
DROP MATERIALIZED VIEW llm_metrics_1hour_store;
DROP MATERIALIZED VIEW llm_metrics_1min_store;
DROP MATERIALIZED VIEW cost_analysis_hourly_store;
DROP TABLE llm_metrics_1min_history, llm_metrics_1hour_history, llm_metrics_1day_history, cost_analysis_hourly_history;

ALTER TABLE _new_llm_metrics_1min_store RENAME TO llm_metrics_1min_store;
ALTER TABLE _new_llm_metrics_1hour_store RENAME TO llm_metrics_1hour_store;
ALTER TABLE _new_llm_metrics_1day_store RENAME TO llm_metrics_1day_store;
ALTER TABLE _new_cost_analysis_hourly_store RENAME TO cost_analysis_hourly_store;

-- Chunks: about a day of 1-minute rows per chunk at production cardinalities, coarser stores longer.
SELECT create_hypertable('llm_metrics_1min_store', 'bucket', chunk_time_interval => INTERVAL '1 day', migrate_data => true);
SELECT create_hypertable('llm_metrics_1hour_store', 'bucket', chunk_time_interval => INTERVAL '30 days', migrate_data => true);
SELECT create_hypertable('llm_metrics_1day_store', 'bucket', chunk_time_interval => INTERVAL '365 days', migrate_data => true);
SELECT create_hypertable('cost_analysis_hourly_store', 'bucket', chunk_time_interval => INTERVAL '7 days', migrate_data => true);
-- create_hypertable indexed (bucket DESC); as in the native flavor, plus the project and user ranges
-- (010, 013). Free-text dimensions stay unindexed (005).
CREATE INDEX llm_metrics_1min_store_project_bucket_idx ON llm_metrics_1min_store (project_id, bucket);
CREATE INDEX llm_metrics_1hour_store_project_bucket_idx ON llm_metrics_1hour_store (project_id, bucket);
CREATE INDEX llm_metrics_1day_store_project_bucket_idx ON llm_metrics_1day_store (project_id, bucket);
CREATE INDEX cost_analysis_hourly_store_project_bucket_idx ON cost_analysis_hourly_store (project_id, bucket);
CREATE INDEX cost_analysis_hourly_store_user_bucket_idx ON cost_analysis_hourly_store (user_id, bucket)
    WHERE octet_length(user_id) <= 512;

SELECT add_retention_policy('llm_metrics_1min_store', drop_after => INTERVAL '37 days');
SELECT add_retention_policy('llm_metrics_1hour_store', drop_after => INTERVAL '210 days');
SELECT add_retention_policy('llm_metrics_1day_store', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('cost_analysis_hourly_store', drop_after => INTERVAL '210 days');

-- Where the passes start (005 native): everything ingested from -infinity, dated from the floor on.
CREATE TABLE rollup_watermarks (
    source       text        PRIMARY KEY,
    watermark    timestamptz NOT NULL,
    rows_rolled  bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    ts_floor     timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO rollup_watermarks (source, watermark, ts_floor) SELECT 'llm_traces', '-infinity', floor FROM _rollup_floor;
COMMENT ON TABLE rollup_watermarks IS 'how far (in ingestion time) the rollups have read each source';
COMMENT ON COLUMN rollup_watermarks.ts_floor IS 'spans dated before this are not rolled up (buckets before it came from the continuous aggregates)';
DROP TABLE _rollup_floor;

-- The passes find the spans ingested since the last one through this index (004 native). The maintenance
-- task summarizes the new ranges of the recent chunks before each pass (receiver/storage/brin.py), so
-- autosummarize is off here and on the span time index (autovacuum's queue of 256 requests drops
-- nearly all at 10K spans/s, each with a LOG line).
CREATE INDEX llm_traces_ingested_at_brin ON llm_traces USING brin (ingested_at)
    WITH (pages_per_range = 32, autosummarize = off);
DO $$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN
        SELECT c.oid::regclass
        FROM pg_class c JOIN pg_am a ON a.oid = c.relam
        WHERE a.amname = 'brin' AND c.relkind = 'i' AND c.reloptions @> ARRAY['autosummarize=on']
    LOOP
        EXECUTE format('ALTER INDEX %s SET (autosummarize = off)', idx);
    END LOOP;
END $$;

-- The views: the native flavor's (010).
CREATE VIEW llm_metrics_1min AS
SELECT bucket, project_id, provider, model, service_name,
       request_count, error_count, error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens, output_tokens::bigint AS output_tokens, total_tokens::bigint AS total_tokens,
       total_cost,
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms, duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram
FROM llm_metrics_1min_store;

CREATE VIEW llm_metrics_1hour AS
SELECT bucket, project_id, provider, model, service_name,
       request_count, error_count, error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens, output_tokens::bigint AS output_tokens, total_tokens::bigint AS total_tokens,
       total_cost,
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms, duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram
FROM llm_metrics_1hour_store;

CREATE VIEW llm_metrics_1day AS
SELECT bucket, project_id, provider, model, service_name,
       request_count, error_count, error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens, output_tokens::bigint AS output_tokens, total_tokens::bigint AS total_tokens,
       total_cost,
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms, duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram
FROM llm_metrics_1day_store;

CREATE VIEW cost_analysis_hourly AS
SELECT bucket, project_id, provider, model, service_name, user_id, environment,
       request_count, error_count, error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens, output_tokens::bigint AS output_tokens, total_tokens::bigint AS total_tokens,
       input_cost, output_cost, total_cost,
       total_cost / request_count AS avg_cost_per_request,
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms, duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram
FROM cost_analysis_hourly_store;

COMMENT ON VIEW llm_metrics_1min IS 'LLM spans per minute x project x provider x model x service (retention 37 days)';
COMMENT ON VIEW llm_metrics_1hour IS 'LLM spans per hour x project x provider x model x service (retention 210 days)';
COMMENT ON VIEW llm_metrics_1day IS 'LLM spans per day x project x provider x model x service (retention 1095 days)';
COMMENT ON VIEW cost_analysis_hourly IS 'LLM spans per hour x project x provider x model x service x user x environment (retention 210 days)';

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT grantee, table_name FROM _view_readers LOOP
        EXECUTE format('GRANT SELECT ON %I TO %I', r.table_name, r.grantee);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'observatory_writer') THEN
        PERFORM grant_writer_privileges('observatory_writer');
    END IF;
END
$$;
