-- TimescaleDB flavor: the continuous aggregates are regrouped by project. A continuous aggregate's
-- GROUP BY cannot be altered, so they are created anew (same names) and what the old ones held is kept:
--
--   cutover C = the start of the UTC day 28 days before this migration ('-infinity' on a database whose
--               rollups are still empty, e.g. a fresh install: nothing to keep).
--   buckets >= C: the new continuous aggregates, computed from the raw spans (which the 90-day retention
--               still holds). Their refresh policies cover the last 30 days, so their first runs
--               (a minute after this migration; 1hour and 1day a few minutes later, after the level they
--               are built from) fill [C, now] completely. Until then the views show nothing for those
--               days; `CALL refresh_continuous_aggregate(...)` fine to coarse does it at once.
--   buckets <  C: the *_history hypertables, a copy of what the old continuous aggregates had
--               materialized (project_id NULL: spans had no project then), kept with each rollup's
--               retention. Rollups outlive raw spans (1095 days for 1day), so this history cannot be
--               recomputed: it is copied, not rebuilt.
--
-- The views (006) union the two at C, so every bucket has exactly one source and the totals stay exact.
-- Spans dated before C that arrive after the upgrade (over 28 days late) are not added to the history.
-- The old continuous aggregates' jobs go with them (migrate() holds every job back, and lets a run in
-- progress finish, before a migration starts: a refresh running while its aggregate is dropped fails one
-- of the two).
SELECT remove_continuous_aggregate_policy('llm_metrics_1min_store');
SELECT remove_continuous_aggregate_policy('llm_metrics_1hour_store');
SELECT remove_continuous_aggregate_policy('llm_metrics_1day_store');
SELECT remove_continuous_aggregate_policy('cost_analysis_hourly_store');
SELECT remove_retention_policy('llm_metrics_1min_store');
SELECT remove_retention_policy('llm_metrics_1hour_store');
SELECT remove_retention_policy('llm_metrics_1day_store');
SELECT remove_retention_policy('cost_analysis_hourly_store');

CREATE TABLE llm_metrics_1min_history (
    bucket            timestamptz      NOT NULL,
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
CREATE TABLE llm_metrics_1hour_history (LIKE llm_metrics_1min_history);
CREATE TABLE llm_metrics_1day_history (LIKE llm_metrics_1min_history);
CREATE TABLE cost_analysis_hourly_history (
    bucket            timestamptz      NOT NULL,
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
SELECT create_hypertable('llm_metrics_1min_history', 'bucket', chunk_time_interval => INTERVAL '7 days');
SELECT create_hypertable('llm_metrics_1hour_history', 'bucket', chunk_time_interval => INTERVAL '30 days');
SELECT create_hypertable('llm_metrics_1day_history', 'bucket', chunk_time_interval => INTERVAL '365 days');
SELECT create_hypertable('cost_analysis_hourly_history', 'bucket', chunk_time_interval => INTERVAL '30 days');

DO $$
DECLARE
    cutover timestamptz := date_trunc('day', now() - INTERVAL '28 days', 'UTC');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM llm_metrics_1min_store) AND NOT EXISTS (SELECT 1 FROM llm_metrics_1hour_store)
       AND NOT EXISTS (SELECT 1 FROM llm_metrics_1day_store) AND NOT EXISTS (SELECT 1 FROM cost_analysis_hourly_store)
    THEN
        cutover := '-infinity';
    END IF;
    INSERT INTO llm_metrics_1min_history SELECT * FROM llm_metrics_1min_store WHERE bucket < cutover;
    INSERT INTO llm_metrics_1hour_history SELECT * FROM llm_metrics_1hour_store WHERE bucket < cutover;
    INSERT INTO llm_metrics_1day_history SELECT * FROM llm_metrics_1day_store WHERE bucket < cutover;
    INSERT INTO cost_analysis_hourly_history SELECT * FROM cost_analysis_hourly_store WHERE bucket < cutover;
    -- Read back below, in this transaction, to write the cutover into the views.
    PERFORM set_config('observatory.rollup_cutover', cutover::text, true);
END
$$;

DROP VIEW llm_metrics_1min, llm_metrics_1hour, llm_metrics_1day, cost_analysis_hourly;
DROP MATERIALIZED VIEW llm_metrics_1day_store;  -- built from 1hour, which is built from 1min
DROP MATERIALIZED VIEW llm_metrics_1hour_store;
DROP MATERIALIZED VIEW llm_metrics_1min_store;
DROP MATERIALIZED VIEW cost_analysis_hourly_store;

-- As in 005, with project_id.
CREATE MATERIALIZED VIEW llm_metrics_1min_store
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
       project_id,
       provider,
       model,
       service_name,
       count(*) AS request_count,
       count(*) FILTER (WHERE status_code = 'error') AS error_count,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       coalesce(sum(total_tokens), 0) AS total_tokens,
       coalesce(sum(total_cost), 0) AS total_cost,
       sum(duration_ms) AS duration_sum_ms,
       min(duration_ms) AS duration_min_ms,
       max(duration_ms) AS duration_max_ms,
       latency_histogram(duration_ms) AS latency_histogram
FROM llm_traces
WHERE provider IS NOT NULL OR model IS NOT NULL
GROUP BY 1, project_id, provider, model, service_name
WITH NO DATA;

CREATE MATERIALIZED VIEW llm_metrics_1hour_store
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
       project_id,
       provider,
       model,
       service_name,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(total_tokens) AS total_tokens,
       sum(total_cost) AS total_cost,
       sum(duration_sum_ms) AS duration_sum_ms,
       min(duration_min_ms) AS duration_min_ms,
       max(duration_max_ms) AS duration_max_ms,
       latency_histogram_merge(latency_histogram) AS latency_histogram
FROM llm_metrics_1min_store
GROUP BY 1, project_id, provider, model, service_name
WITH NO DATA;

CREATE MATERIALIZED VIEW llm_metrics_1day_store
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
       project_id,
       provider,
       model,
       service_name,
       sum(request_count)::bigint AS request_count,
       sum(error_count)::bigint AS error_count,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(total_tokens) AS total_tokens,
       sum(total_cost) AS total_cost,
       sum(duration_sum_ms) AS duration_sum_ms,
       min(duration_min_ms) AS duration_min_ms,
       max(duration_max_ms) AS duration_max_ms,
       latency_histogram_merge(latency_histogram) AS latency_histogram
FROM llm_metrics_1hour_store
GROUP BY 1, project_id, provider, model, service_name
WITH NO DATA;

CREATE MATERIALIZED VIEW cost_analysis_hourly_store
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
       project_id,
       provider,
       model,
       service_name,
       user_id,
       environment,
       count(*) AS request_count,
       count(*) FILTER (WHERE status_code = 'error') AS error_count,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       coalesce(sum(total_tokens), 0) AS total_tokens,
       coalesce(sum(input_cost), 0) AS input_cost,
       coalesce(sum(output_cost), 0) AS output_cost,
       coalesce(sum(total_cost), 0) AS total_cost,
       sum(duration_ms) AS duration_sum_ms,
       min(duration_ms) AS duration_min_ms,
       max(duration_ms) AS duration_max_ms,
       latency_histogram(duration_ms) AS latency_histogram
FROM llm_traces
WHERE provider IS NOT NULL OR model IS NOT NULL
GROUP BY 1, project_id, provider, model, service_name, user_id, environment
WITH NO DATA;

-- "Cost per tenant per hour": WHERE project_id = $1 AND bucket >= $2 reads one index range (uuid: a
-- fixed 16 bytes; the free-text dimensions stay unindexed, see 005).
CREATE INDEX llm_metrics_1min_store_project_bucket_idx ON llm_metrics_1min_store (project_id, bucket);
CREATE INDEX llm_metrics_1hour_store_project_bucket_idx ON llm_metrics_1hour_store (project_id, bucket);
CREATE INDEX llm_metrics_1day_store_project_bucket_idx ON llm_metrics_1day_store (project_id, bucket);
CREATE INDEX cost_analysis_hourly_store_project_bucket_idx ON cost_analysis_hourly_store (project_id, bucket);

-- Policies as in 005 and 007 (the old ones went with the old continuous aggregates).
-- First runs: a minute after the migration (once migrate() lets the jobs go), coarse after fine. The
-- first run of each re-materializes its whole 30-day window (TimescaleDB 2.28: one bucket per batch; ~100
-- s for the 1-minute aggregate measured on a test database), later ones only what changed.
SELECT add_continuous_aggregate_policy('llm_metrics_1min_store',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '30 seconds',
    initial_start => now() + INTERVAL '1 minute');
SELECT add_continuous_aggregate_policy('cost_analysis_hourly_store',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '5 minutes',
    initial_start => now() + INTERVAL '1 minute');
SELECT add_continuous_aggregate_policy('llm_metrics_1hour_store',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '5 minutes',
    initial_start => now() + INTERVAL '4 minutes');
SELECT add_continuous_aggregate_policy('llm_metrics_1day_store',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '1 hour',
    initial_start => now() + INTERVAL '6 minutes');
SELECT add_retention_policy('llm_metrics_1min_store', drop_after => INTERVAL '37 days');
SELECT add_retention_policy('llm_metrics_1hour_store', drop_after => INTERVAL '210 days');
SELECT add_retention_policy('llm_metrics_1day_store', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('cost_analysis_hourly_store', drop_after => INTERVAL '210 days');
SELECT add_retention_policy('llm_metrics_1min_history', drop_after => INTERVAL '37 days');
SELECT add_retention_policy('llm_metrics_1hour_history', drop_after => INTERVAL '210 days');
SELECT add_retention_policy('llm_metrics_1day_history', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('cost_analysis_hourly_history', drop_after => INTERVAL '210 days');

-- The views: the new continuous aggregates from the cutover on, the history before it.
DO $$
DECLARE
    cutover text := quote_literal(current_setting('observatory.rollup_cutover'));
    measures text := '
       request_count, error_count, error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens, output_tokens::bigint AS output_tokens, total_tokens::bigint AS total_tokens,
       %s
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms, duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram';
    columns text := 'provider, model, service_name, request_count, error_count, input_tokens, output_tokens, '
        'total_tokens, total_cost, duration_sum_ms, duration_min_ms, duration_max_ms, latency_histogram';
    cost_columns text := 'provider, model, service_name, user_id, environment, request_count, error_count, '
        'input_tokens, output_tokens, total_tokens, input_cost, output_cost, total_cost, duration_sum_ms, '
        'duration_min_ms, duration_max_ms, latency_histogram';
    view text;
BEGIN
    FOREACH view IN ARRAY ARRAY['llm_metrics_1min', 'llm_metrics_1hour', 'llm_metrics_1day'] LOOP
        EXECUTE format(
            'CREATE VIEW %1$I AS SELECT bucket, project_id, provider, model, service_name, %6$s
             FROM (SELECT bucket, project_id, %4$s FROM %2$I WHERE bucket >= %5$s::timestamptz
                   UNION ALL
                   SELECT bucket, NULL::uuid, %4$s FROM %3$I WHERE bucket < %5$s::timestamptz) r',
            view, view || '_store', view || '_history', columns, cutover, replace(measures, '%s', 'total_cost,'));
    END LOOP;
    EXECUTE format(
        'CREATE VIEW cost_analysis_hourly AS
         SELECT bucket, project_id, provider, model, service_name, user_id, environment, %3$s
         FROM (SELECT bucket, project_id, %1$s FROM cost_analysis_hourly_store WHERE bucket >= %2$s::timestamptz
               UNION ALL
               SELECT bucket, NULL::uuid, %1$s FROM cost_analysis_hourly_history WHERE bucket < %2$s::timestamptz) r',
        cost_columns, cutover,
        replace(measures, '%s', 'input_cost, output_cost, total_cost, total_cost / request_count AS avg_cost_per_request,'));
    FOREACH view IN ARRAY ARRAY['llm_metrics_1min', 'llm_metrics_1hour', 'llm_metrics_1day', 'cost_analysis_hourly']
    LOOP
        EXECUTE format('COMMENT ON TABLE %I IS %L', view || '_history',
            'rollup rows of ' || view || ' materialized before migration 010, for buckets before '
            || current_setting('observatory.rollup_cutover') || ' (no project); newer buckets: ' || view || '_store');
    END LOOP;
END
$$;
COMMENT ON VIEW llm_metrics_1min IS 'LLM spans per minute x project x provider x model x service (retention 37 days)';
COMMENT ON VIEW llm_metrics_1hour IS 'LLM spans per hour x project x provider x model x service (retention 210 days)';
COMMENT ON VIEW llm_metrics_1day IS 'LLM spans per day x project x provider x model x service (retention 1095 days)';
COMMENT ON VIEW cost_analysis_hourly IS 'LLM spans per hour x project x provider x model x service x user x environment (retention 210 days)';
