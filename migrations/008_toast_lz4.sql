-- lz4 instead of pglz for the values PostgreSQL compresses out of line (TOAST): the jsonb columns that
-- carry prompts and completions, log bodies, metric buckets. Profiled under `make bench`, pglz_compress
-- was the largest single cost in PostgreSQL (27% of its CPU); lz4 compresses several times faster at a
-- similar ratio for this text. Only new values are affected: nothing is rewritten.
--
-- Applied to the three signal tables and every table below them (native partitions, TimescaleDB
-- chunks, DEFAULT partitions): ALTER TABLE on a parent does not reach existing children. Partitions
-- created later copy it (receiver/storage/partitions.py: LIKE … INCLUDING COMPRESSION; PARTITION OF and
-- TimescaleDB chunks take the parent's). A PostgreSQL built without lz4 keeps pglz: the migration says so and
-- succeeds. A table that refuses the change (e.g. a TimescaleDB version that rejects it on a
-- compressed hypertable) keeps pglz too, with a notice naming it.
DO $$
DECLARE
    target record;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
    ) THEN
        RAISE NOTICE 'this PostgreSQL has no lz4 support: TOAST compression stays pglz';
        RETURN;
    END IF;
    FOR target IN
        WITH RECURSIVE tree(rel) AS (
            SELECT c.oid FROM pg_class c
            WHERE c.relname IN ('llm_traces', 'llm_metrics', 'llm_logs')
              AND c.relnamespace = current_schema()::regnamespace
            UNION
            SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.rel
        )
        SELECT t.rel::regclass AS rel, a.attname
        FROM tree t
        JOIN pg_attribute a ON a.attrelid = t.rel
        WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attstorage IN ('x', 'm')
          AND a.attcompression IS DISTINCT FROM 'l'
        ORDER BY 1, 2
    LOOP
        BEGIN
            -- Not ONLY: TimescaleDB refuses ONLY on hypertables (children are in the loop anyway).
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET COMPRESSION lz4', target.rel, target.attname);
        EXCEPTION WHEN OTHERS THEN  -- an optimisation: never worth failing the upgrade over
            RAISE NOTICE 'TOAST compression of %.% stays as it is: %', target.rel, target.attname, SQLERRM;
        END;
    END LOOP;
END
$$;
