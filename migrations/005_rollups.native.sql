-- Native flavor: the rollups' storage tables, kept by the receiver's maintenance task
-- (receiver/storage/rollups.py). Every column is additive (counts, sums, min/max, histogram counts),
-- so each pass aggregates only the spans ingested since the previous pass (ingested_at in
-- [watermark, horizon)) and adds them to the buckets they fall in: late spans land in their own
-- bucket, however old. The views that compute averages and percentiles are in 006 (both flavors).
-- Columns and their meaning are the same as the TimescaleDB flavor's continuous aggregates.
CREATE TABLE llm_metrics_1min_store (
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
-- Only the bucket is indexed: the dimensions are free text from spans (a btree entry over 2704 bytes
-- would fail the pass), and every query and every maintenance step selects a bucket range first.
CREATE INDEX llm_metrics_1min_store_bucket_idx ON llm_metrics_1min_store (bucket);

CREATE TABLE llm_metrics_1hour_store (LIKE llm_metrics_1min_store INCLUDING ALL);
CREATE TABLE llm_metrics_1day_store (LIKE llm_metrics_1min_store INCLUDING ALL);

CREATE TABLE cost_analysis_hourly_store (
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
CREATE INDEX cost_analysis_hourly_store_bucket_idx ON cost_analysis_hourly_store (bucket);

-- Spans with ingested_at < watermark are in all four rollups; the next pass starts there.
CREATE TABLE rollup_watermarks (
    source       text        PRIMARY KEY,
    watermark    timestamptz NOT NULL,
    rows_rolled  bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rollup_watermarks (source, watermark) VALUES ('llm_traces', '-infinity');
COMMENT ON TABLE rollup_watermarks IS 'native flavor: how far (in ingestion time) the rollups have read each source';
