-- Native flavor: the rollup maintenance reads the rows ingested since its last pass. Rows are appended
-- in ingestion order, so a BRIN index finds them by reading only the block ranges written recently.
CREATE INDEX llm_traces_ingested_at_brin ON llm_traces USING brin (ingested_at)
    WITH (pages_per_range = 32, autosummarize = on);
