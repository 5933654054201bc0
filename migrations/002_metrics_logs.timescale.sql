-- TimescaleDB flavor: hypertables with the migration report's chunk intervals.
SELECT create_hypertable('llm_metrics', 'ts', chunk_time_interval => INTERVAL '1 hour');
SELECT create_hypertable('llm_logs', 'ts', chunk_time_interval => INTERVAL '1 day');
