-- llm_metrics and llm_logs (all flavors).
--
-- llm_metrics: one row per OTLP data point of every metric type, with enough columns to rebuild the
-- point exactly. point_id is a deterministic hash of the point's identity (resource, scope, metric
-- name and type, point attributes, start and time), so a retried or replayed point is stored once
-- and two different series never share a key.
CREATE TABLE llm_metrics (
    ts                     timestamptz      NOT NULL,
    start_ts               timestamptz,
    point_id               uuid             NOT NULL,
    metric_name            text             NOT NULL,
    metric_type            text             NOT NULL
        CHECK (metric_type IN ('gauge', 'sum', 'histogram', 'exponential_histogram', 'summary')),
    description            text,
    unit                   text,
    temporality            text             CHECK (temporality IN ('delta', 'cumulative')),
    is_monotonic           boolean,
    value                  double precision,
    value_int              bigint,
    count                  bigint,
    sum                    double precision,
    min                    double precision,
    max                    double precision,
    bucket_counts          bigint[],
    explicit_bounds        double precision[],
    scale                  integer,
    zero_count             bigint,
    zero_threshold         double precision,
    positive_offset        integer,
    positive_bucket_counts bigint[],
    negative_offset        integer,
    negative_bucket_counts bigint[],
    quantiles              double precision[],
    quantile_values        double precision[],
    exemplars              jsonb,
    flags                  integer          NOT NULL DEFAULT 0,
    service_name           text,
    provider               text,
    model                  text,
    scope_name             text,
    scope_version          text,
    attributes             jsonb            NOT NULL,
    resource_attributes    jsonb            NOT NULL,
    PRIMARY KEY (point_id, ts)
);

COMMENT ON TABLE llm_metrics IS 'One row per OTLP metric data point (gauge, sum, histogram, exponential_histogram, summary)';
COMMENT ON COLUMN llm_metrics.value IS 'gauge/sum value as double (also set for integer points)';
COMMENT ON COLUMN llm_metrics.value_int IS 'gauge/sum value when the point was an integer (exact)';

-- llm_logs: one row per OTLP log record. record_id is a deterministic hash of the record, for
-- idempotency. trace_id/span_id are NULL when absent or invalid, never made up.
CREATE TABLE llm_logs (
    ts                  timestamptz NOT NULL,
    observed_ts         timestamptz,
    record_id           uuid        NOT NULL,
    trace_id            uuid,
    span_id             text,
    severity_number     integer     NOT NULL DEFAULT 0,
    severity_text       text,
    body                text,
    body_json           jsonb,
    event_name          text,
    flags               integer     NOT NULL DEFAULT 0,
    service_name        text,
    provider            text,
    model               text,
    scope_name          text,
    scope_version       text,
    attributes          jsonb       NOT NULL,
    resource_attributes jsonb       NOT NULL,
    PRIMARY KEY (record_id, ts)
);

COMMENT ON TABLE llm_logs IS 'One row per OTLP log record / event';
COMMENT ON COLUMN llm_logs.ts IS 'time_unix_nano, or observed_time_unix_nano when the record has no time';
COMMENT ON COLUMN llm_logs.body IS 'the body as text: verbatim for string bodies, JSON text for any other type';
COMMENT ON COLUMN llm_logs.body_json IS 'the body as JSON when it is not a string (maps and arrays stay structured)';
