-- The user and session indexes of llm_traces become btrees on (id, ts), partial on the id being set.
--
-- Migration 004 gave user_id and session_id hash indexes (a 4-byte entry whatever the value). A hash
-- index keeps every row with the same key in one bucket and its chain of overflow pages, and an insert
-- walks that chain to find room: with the few users an LLM application has (one of them often a tenth
-- of the traffic), each insert into a day's partition cost more than the last. Measured with
-- `python -m benchmarks.growth` (loadgen's workload, Zipf users): the user_id hash index's page visits
-- per row went 9.8 -> 25 between 0.5 M and 1 M rows and kept growing; at 10K spans/s ingest collapsed
-- after ~3 minutes. A btree has no such chain: a row of user U at time T goes to the end of U's range,
-- one leaf page per active user stays hot, and the cost per row is flat (README, "Indexes").
--
-- (id, ts) also serves the queries as they are asked: one user's or one conversation's spans, newest
-- first, in a time window. Partial: spans without the id (HTTP, database, tool spans) cost nothing.
-- btree entries are limited to ~2.7 KB; the receiver stores ids of at most 512 bytes (longer ones keep
-- their start plus a hash: receiver/convert/genai.py, as_key). Rows stored before that rule are
-- shortened the same way here first, so building the index cannot fail on them.
UPDATE llm_traces SET user_id = left(user_id, 120) || '…#' || left(md5(user_id), 16)
WHERE octet_length(user_id) > 512;
UPDATE llm_traces SET session_id = left(session_id, 120) || '…#' || left(md5(session_id), 16)
WHERE octet_length(session_id) > 512;

DROP INDEX IF EXISTS llm_traces_session_id_hash;
DROP INDEX IF EXISTS llm_traces_user_id_hash;
CREATE INDEX llm_traces_session_ts_idx ON llm_traces (session_id, ts) WHERE session_id IS NOT NULL;
CREATE INDEX llm_traces_user_ts_idx ON llm_traces (user_id, ts) WHERE user_id IS NOT NULL;

-- The primary key becomes (ts, trace_id, span_id), and trace lookups get their own index.
--
-- The idempotency key is the same three columns (a retry still meets the row stored the first time),
-- but their order decides where an insert lands. With the random trace id first, every span went to a
-- random leaf of the largest index of the table (117 bytes per span measured): the whole index of the
-- partition receiving writes was the working set, and at 10K spans/s a day's of it (~100 GB) cannot
-- stay in memory. Time first, inserts land among the last minutes' keys (spans arrive seconds to
-- minutes after they start), whatever the size of the table. Only `llm_traces_trace_id_idx` is still
-- written at random, and it is ~5x smaller (24 bytes per span: a 16-byte uuid, deduplicated across the
-- spans of a trace). `python -m benchmarks.growth` measured both; README, "Indexes" and "Sizing
-- partitions".
DO $$
DECLARE
    name text;
BEGIN
    SELECT conname INTO name FROM pg_constraint WHERE conrelid = 'llm_traces'::regclass AND contype = 'p';
    IF name IS NOT NULL THEN
        EXECUTE format('ALTER TABLE llm_traces DROP CONSTRAINT %I', name);
    END IF;
END $$;
ALTER TABLE llm_traces ADD CONSTRAINT llm_traces_pkey PRIMARY KEY (ts, trace_id, span_id);
CREATE INDEX llm_traces_trace_id_idx ON llm_traces (trace_id);
