-- TimescaleDB flavor: the store is a hypertable like the other rollup stores (015), its retention a policy.
SELECT create_hypertable('usage_environment_hourly_store', 'bucket', chunk_time_interval => INTERVAL '30 days',
                         migrate_data => true, create_default_indexes => false);
SELECT add_retention_policy('usage_environment_hourly_store', drop_after => INTERVAL '210 days');
