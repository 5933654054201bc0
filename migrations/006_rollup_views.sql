-- The rollups as operators query them (all flavors; same definitions over the native flavor's tables
-- and the TimescaleDB flavor's continuous aggregates, so both answer the same).
--
-- Rollups cover LLM spans: rows of llm_traces with a provider or a model. Tokens and costs a span did
-- not report count as 0. avg_latency_ms is exact; p50/p95/p99 come from the latency histogram (nearest
-- rank, relative error <= 4.43 %, clamped into the exact [min, max]). latency_histogram is exposed so
-- any other grouping can be merged exactly:
--   SELECT model, latency_quantile(latency_histogram_merge(latency_histogram), 0.99)
--   FROM llm_metrics_1hour WHERE bucket >= now() - interval '7 days' GROUP BY model;
CREATE VIEW llm_metrics_1min AS
SELECT bucket,
       provider,
       model,
       service_name,
       request_count,
       error_count,
       error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens,
       output_tokens::bigint AS output_tokens,
       total_tokens::bigint AS total_tokens,
       total_cost,
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms,
       duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram
FROM llm_metrics_1min_store;

CREATE VIEW llm_metrics_1hour AS
SELECT bucket,
       provider,
       model,
       service_name,
       request_count,
       error_count,
       error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens,
       output_tokens::bigint AS output_tokens,
       total_tokens::bigint AS total_tokens,
       total_cost,
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms,
       duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram
FROM llm_metrics_1hour_store;

CREATE VIEW llm_metrics_1day AS
SELECT bucket,
       provider,
       model,
       service_name,
       request_count,
       error_count,
       error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens,
       output_tokens::bigint AS output_tokens,
       total_tokens::bigint AS total_tokens,
       total_cost,
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms,
       duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram
FROM llm_metrics_1day_store;

CREATE VIEW cost_analysis_hourly AS
SELECT bucket,
       provider,
       model,
       service_name,
       user_id,
       environment,
       request_count,
       error_count,
       error_count::double precision / request_count AS error_rate,
       input_tokens::bigint AS input_tokens,
       output_tokens::bigint AS output_tokens,
       total_tokens::bigint AS total_tokens,
       input_cost,
       output_cost,
       total_cost,
       total_cost / request_count AS avg_cost_per_request,
       duration_sum_ms / request_count AS avg_latency_ms,
       duration_min_ms AS min_latency_ms,
       duration_max_ms AS max_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.50), duration_min_ms), duration_max_ms) AS p50_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.95), duration_min_ms), duration_max_ms) AS p95_latency_ms,
       least(greatest(latency_quantile(latency_histogram, 0.99), duration_min_ms), duration_max_ms) AS p99_latency_ms,
       latency_histogram
FROM cost_analysis_hourly_store;

COMMENT ON VIEW llm_metrics_1min IS 'LLM spans per minute x provider x model x service (retention 37 days)';
COMMENT ON VIEW llm_metrics_1hour IS 'LLM spans per hour x provider x model x service (retention 210 days)';
COMMENT ON VIEW llm_metrics_1day IS 'LLM spans per day x provider x model x service (retention 1095 days)';
COMMENT ON VIEW cost_analysis_hourly IS 'LLM spans per hour x provider x model x service x user x environment (retention 210 days)';
