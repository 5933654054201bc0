-- TimescaleDB flavor: the rollups' storage is continuous aggregates (hierarchical: 1hour is built
-- from 1min, 1day from 1hour; cost by user needs the raw spans). No ordered-set aggregates (TimescaleDB
-- rejects them; that is why the seeds' migration 004 failed): latencies are kept as mergeable
-- histograms (005_rollups.sql). No group-by indexes: the dimensions are free text from spans, and a
-- btree entry over 2704 bytes would fail the refresh. The views in 006 add averages and percentiles.
--
-- Refresh policies: the migration report's schedules. Windows: start_offset 30 days — late spans up to
-- 30 days old are picked up; 30 days stays inside every source's retention (raw 90 d, 1min 37 d), so a
-- refresh never recomputes a coarse bucket from a source that has already dropped part of it.
-- end_offset NULL: the current (partial) bucket is materialized too and re-done when more spans arrive,
-- as the native flavor's rollups include every span ingested so far.
CREATE MATERIALIZED VIEW llm_metrics_1min_store
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
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
GROUP BY 1, provider, model, service_name
WITH NO DATA;

CREATE MATERIALIZED VIEW llm_metrics_1hour_store
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
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
GROUP BY 1, provider, model, service_name
WITH NO DATA;

CREATE MATERIALIZED VIEW llm_metrics_1day_store
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
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
GROUP BY 1, provider, model, service_name
WITH NO DATA;

CREATE MATERIALIZED VIEW cost_analysis_hourly_store
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
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
GROUP BY 1, provider, model, service_name, user_id, environment
WITH NO DATA;

SELECT add_continuous_aggregate_policy('llm_metrics_1min_store',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '30 seconds');
SELECT add_continuous_aggregate_policy('llm_metrics_1hour_store',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('llm_metrics_1day_store',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '1 hour');
SELECT add_continuous_aggregate_policy('cost_analysis_hourly_store',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '5 minutes');
