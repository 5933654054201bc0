-- TimescaleDB flavor: create_hypertable made a btree on (ts DESC) (llm_traces_ts_idx). Chunk exclusion
-- already narrows a time range to its days, and the BRIN index above serves ranges inside a day for a
-- fraction of the btree's insert cost (README, index table), so the span table keeps the same index set
-- in both flavors. llm_metrics and llm_logs keep their default ts indexes.
DROP INDEX IF EXISTS llm_traces_ts_idx;
