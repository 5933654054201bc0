-- Native flavor: the rollup stores get the project as one more dimension. Existing rollup rows keep
-- their numbers with project_id NULL, which is exactly the project of every span stored before this
-- migration; new spans of those groups without a project keep adding to them. The maintenance task
-- (receiver/storage/rollups.py) groups by project_id from now on.
ALTER TABLE llm_metrics_1min_store ADD COLUMN project_id uuid;
ALTER TABLE llm_metrics_1hour_store ADD COLUMN project_id uuid;
ALTER TABLE llm_metrics_1day_store ADD COLUMN project_id uuid;
ALTER TABLE cost_analysis_hourly_store ADD COLUMN project_id uuid;
-- "Cost per tenant per hour": WHERE project_id = $1 AND bucket >= $2 reads one index range. uuid is a
-- fixed 16 bytes: no entry can outgrow a btree page.
CREATE INDEX llm_metrics_1min_store_project_bucket_idx ON llm_metrics_1min_store (project_id, bucket);
CREATE INDEX llm_metrics_1hour_store_project_bucket_idx ON llm_metrics_1hour_store (project_id, bucket);
CREATE INDEX llm_metrics_1day_store_project_bucket_idx ON llm_metrics_1day_store (project_id, bucket);
CREATE INDEX cost_analysis_hourly_store_project_bucket_idx ON cost_analysis_hourly_store (project_id, bucket);

-- The views of 006 with project_id after bucket (a new column in the middle: drop and create).
DROP VIEW llm_metrics_1min, llm_metrics_1hour, llm_metrics_1day, cost_analysis_hourly;

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
