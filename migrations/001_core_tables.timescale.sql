-- TimescaleDB flavor: llm_traces is a hypertable with one-day chunks (the migration report's interval).
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT create_hypertable('llm_traces', 'ts', chunk_time_interval => INTERVAL '1 day');
