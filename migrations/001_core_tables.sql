-- Core tables of the LLM Observatory schema (all flavors).
-- One row per span. The primary key (trace_id, span_id, ts) is the idempotency key: a span exported
-- twice (client retry, spool replay) is stored once. It includes ts because partitions and
-- hypertable chunks are by ts. Large text (prompts, completions) lives only in the jsonb columns,
-- never in an index entry.
CREATE TABLE llm_traces (
    ts                    timestamptz      NOT NULL,
    end_ts                timestamptz      NOT NULL,
    trace_id              uuid             NOT NULL,
    span_id               text             NOT NULL,
    parent_span_id        text,
    span_name             text             NOT NULL,
    span_kind             text             NOT NULL,
    service_name          text,
    scope_name            text,
    scope_version         text,
    provider              text,
    model                 text,
    request_model         text,
    response_model        text,
    operation             text,
    input_tokens          bigint,
    output_tokens         bigint,
    total_tokens          bigint,
    cache_read_tokens     bigint,
    cache_creation_tokens bigint,
    reasoning_tokens      bigint,
    input_cost            numeric,
    output_cost           numeric,
    total_cost            numeric,
    cost_source           text,
    duration_ms           double precision NOT NULL,
    status_code           text             NOT NULL,
    status_message        text,
    user_id               text,
    session_id            text,
    environment           text,
    tags                  text[],
    finish_reasons        text[],
    trace_state           text,
    attributes            jsonb            NOT NULL,
    resource_attributes   jsonb            NOT NULL,
    events                jsonb,
    links                 jsonb,
    PRIMARY KEY (trace_id, span_id, ts)
);

COMMENT ON TABLE llm_traces IS 'One row per OTLP span; LLM columns are NULL on non-LLM spans';
COMMENT ON COLUMN llm_traces.model IS 'response model when known, else request model';
COMMENT ON COLUMN llm_traces.cost_source IS 'span: cost attributes on the span; pricing: tokens x model_pricing';
COMMENT ON COLUMN llm_traces.duration_ms IS 'end_ts - ts in milliseconds (nanosecond precision)';

-- Prices in USD per million tokens; the receiver seeds it from config/pricing.toml at start-up.
CREATE TABLE model_pricing (
    provider                      text        NOT NULL,
    model                         text        NOT NULL,
    effective_date                date        NOT NULL DEFAULT DATE '1970-01-01',
    input_price_per_million       numeric     NOT NULL CHECK (input_price_per_million >= 0),
    output_price_per_million      numeric     NOT NULL CHECK (output_price_per_million >= 0),
    cache_read_price_per_million  numeric     CHECK (cache_read_price_per_million >= 0),
    cache_write_price_per_million numeric     CHECK (cache_write_price_per_million >= 0),
    source                        text        NOT NULL DEFAULT 'file',
    updated_at                    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, model, effective_date)
);

-- Rows the database refused (bisected out of their batch), with the database's error.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    table_name  text        NOT NULL,
    error       text        NOT NULL,
    sqlstate    text,
    row_data    jsonb       NOT NULL
);
