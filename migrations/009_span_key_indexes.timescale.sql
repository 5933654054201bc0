-- TimescaleDB flavor: chunks of 6 hours for spans and log records (were 1 day), the default of
-- maintenance.partition_hours: at 10K spans/s a day's chunk has a ~20 GB trace-id index, a 6-hour one
-- ~5 GB (README, "Sizing partitions"). New chunks only; the receiver's maintenance pass applies another
-- configured length.
SELECT set_chunk_time_interval('llm_traces', INTERVAL '6 hours');
SELECT set_chunk_time_interval('llm_logs', INTERVAL '6 hours');
