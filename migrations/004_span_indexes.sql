-- The measured index set on llm_traces (all flavors). `python -m benchmarks.indexes` measures what each
-- index costs in COPY rows/s; the README lists the figures and the query each index serves. Nothing
-- here indexes free text: prompts and completions live only in the jsonb columns, and the two
-- user-supplied identifiers use hash indexes, whose 4-byte entries cannot exceed btree's 2704-byte
-- limit however long the value (a too-long btree entry fails the whole COPY batch).
--
-- ingested_at: when the row was written (the COPY statement's start). The native flavor's rollups
-- advance a watermark over it; it also tells how late spans arrive. Existing rows get the time of
-- this migration, so the first rollup pass after an upgrade includes them.
ALTER TABLE llm_traces ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT statement_timestamp();
COMMENT ON COLUMN llm_traces.ingested_at IS 'when the row was stored (start of the COPY / INSERT statement)';

-- Time ranges inside a day (partitions and chunks prune whole days): spans arrive roughly in time
-- order, so a BRIN index is a few pages per day and almost free to maintain.
CREATE INDEX llm_traces_ts_brin ON llm_traces USING brin (ts) WITH (pages_per_range = 32, autosummarize = on);

-- Latest errors: WHERE status_code = 'error' ORDER BY ts DESC LIMIT n. Partial: only error rows pay.
CREATE INDEX llm_traces_errors_ts_idx ON llm_traces (ts DESC) WHERE status_code = 'error';

-- One conversation: WHERE session_id = $1.  One user's spans: WHERE user_id = $1 AND ts >= $2.
CREATE INDEX llm_traces_session_id_hash ON llm_traces USING hash (session_id);
CREATE INDEX llm_traces_user_id_hash ON llm_traces USING hash (user_id);
