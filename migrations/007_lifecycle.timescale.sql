-- TimescaleDB flavor: compression and retention, with the migration report's numbers.
-- (Native flavor: the receiver's maintenance task creates and drops daily partitions and deletes
-- expired rollup rows, with the retention days of config [maintenance]; see 007_lifecycle.native.sql.)
--
-- Compression after 7 days. segmentby: what queries on old data filter by, so a query for one model
-- decompresses only that model's segments. orderby ts DESC (time-range scans), then the primary key's
-- other columns so a late duplicate of an old span is found through the batches' min/max metadata.
ALTER TABLE llm_traces SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'provider, model',
    timescaledb.compress_orderby = 'ts DESC, trace_id, span_id'
);
ALTER TABLE llm_metrics SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'provider, model, metric_name',
    timescaledb.compress_orderby = 'ts DESC, point_id'
);
-- Logs: by service (the report's log_level is not a column; severity has too few values to be worth
-- a segment of its own and the service is what log queries filter by).
ALTER TABLE llm_logs SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'service_name',
    timescaledb.compress_orderby = 'ts DESC, record_id'
);
SELECT add_compression_policy('llm_traces', compress_after => INTERVAL '7 days');
SELECT add_compression_policy('llm_metrics', compress_after => INTERVAL '7 days');
SELECT add_compression_policy('llm_logs', compress_after => INTERVAL '7 days');

SELECT add_retention_policy('llm_traces', drop_after => INTERVAL '90 days');
SELECT add_retention_policy('llm_metrics', drop_after => INTERVAL '37 days');
SELECT add_retention_policy('llm_logs', drop_after => INTERVAL '37 days');
SELECT add_retention_policy('llm_metrics_1min_store', drop_after => INTERVAL '37 days');
SELECT add_retention_policy('llm_metrics_1hour_store', drop_after => INTERVAL '210 days');
SELECT add_retention_policy('llm_metrics_1day_store', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('cost_analysis_hourly_store', drop_after => INTERVAL '210 days');
