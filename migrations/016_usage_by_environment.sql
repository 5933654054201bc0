-- A rollup per hour x project x provider x model x service x environment, without the user (all
-- flavors; kept by the maintenance task with the other four, receiver/storage/rollups.py).
--
-- Why: usage by environment (GET /api/v1/usage?group_by=environment, dashboards) could only be read
-- from cost_analysis_hourly, which also has the user: a day of it at production cardinalities is tens of
-- thousands of rows (one per user and hour), each with a 242-bucket latency histogram to merge, about
-- 1 s of CPU per question. Environments are few: this rollup holds a handful of rows per hour.
CREATE TABLE usage_environment_hourly_store (
    bucket            timestamptz      NOT NULL,
    project_id        uuid,
    provider          text,
    model             text,
    service_name      text,
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
CREATE INDEX usage_environment_hourly_store_bucket_idx ON usage_environment_hourly_store (bucket);
CREATE INDEX usage_environment_hourly_store_project_bucket_idx ON usage_environment_hourly_store (project_id, bucket);

-- Filled from cost_analysis_hourly, which has every dimension of this one: exact (counts, sums, min/max
-- and histogram counts add up), and consistent with the watermark, which is held while this runs so no
-- maintenance pass adds to the one without the other.
SELECT watermark FROM rollup_watermarks WHERE source = 'llm_traces' FOR UPDATE;
INSERT INTO usage_environment_hourly_store
SELECT bucket, project_id, provider, model, service_name, environment,
       sum(request_count)::bigint, sum(error_count)::bigint,
       sum(input_tokens), sum(output_tokens), sum(total_tokens),
       sum(input_cost), sum(output_cost), sum(total_cost),
       sum(duration_sum_ms), min(duration_min_ms), max(duration_max_ms),
       latency_histogram_merge(latency_histogram)
FROM cost_analysis_hourly_store
GROUP BY bucket, project_id, provider, model, service_name, environment;

CREATE VIEW usage_environment_hourly AS
SELECT bucket, project_id, provider, model, service_name, environment,
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
FROM usage_environment_hourly_store;
COMMENT ON VIEW usage_environment_hourly IS 'LLM spans per hour x project x provider x model x service x environment (retention 210 days, as cost_analysis_hourly)';

-- Readers of the other rollup views read this one too; the writer role's grants include it.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT grantee FROM information_schema.role_table_grants
        WHERE table_schema = current_schema() AND privilege_type = 'SELECT' AND table_name = 'cost_analysis_hourly'
          AND grantee <> current_user
    LOOP
        EXECUTE format('GRANT SELECT ON usage_environment_hourly TO %I', r.grantee);
    END LOOP;
END
$$;
CREATE OR REPLACE FUNCTION grant_writer_privileges(writer name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), writer);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), writer);
    EXECUTE format('GRANT SELECT, INSERT ON llm_traces, llm_metrics, llm_logs TO %I', writer);
    EXECUTE format('GRANT INSERT ON dead_letters TO %I', writer);
    EXECUTE format('GRANT USAGE ON SEQUENCE dead_letters_id_seq TO %I', writer);
    EXECUTE format('GRANT SELECT ON model_pricing, projects, schema_migrations TO %I', writer);
    EXECUTE format(
        'GRANT SELECT (id, project_id, key_hash, key_prefix, scopes, rate_items_per_s, expires_at, revoked_at) '
        'ON api_keys TO %I', writer);
    EXECUTE format('GRANT UPDATE (last_used_at) ON api_keys TO %I', writer);
    EXECUTE format('GRANT SELECT ON rollup_watermarks TO %I', writer);
    EXECUTE format(
        'GRANT SELECT ON llm_metrics_1min, llm_metrics_1hour, llm_metrics_1day, cost_analysis_hourly, '
        'usage_environment_hourly TO %I', writer);
END
$$;
COMMENT ON FUNCTION grant_writer_privileges(name) IS
    'grants a role what `run` needs (migrations 011, 013, 016: the read API reads the rollup views); '
    're-run it after adding a table the writers use';
REVOKE EXECUTE ON FUNCTION grant_writer_privileges(name) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'observatory_writer') THEN
        PERFORM grant_writer_privileges('observatory_writer');
    END IF;
END
$$;
