-- Native flavor: the maintenance task summarizes the BRIN ranges of the partitions receiving writes
-- before each rollup pass (receiver/storage/brin.py). autosummarize asked autovacuum for the same, one
-- request per filled range, through a queue of 256 requests per database: at 10K spans/s nearly all were
-- dropped, each with a LOG line ("request for BRIN range summarization ... was not recorded", ~6,000 a
-- minute). It is switched off on every existing partition's BRIN index (a metadata change, no rebuild);
-- partitions the maintenance task creates switch it off as they are attached. The partitioned parent
-- index keeps the option (PostgreSQL cannot alter a partitioned index; rebuilding it would read every row).
DO $$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN
        SELECT c.oid::regclass
        FROM pg_class c JOIN pg_am a ON a.oid = c.relam
        WHERE a.amname = 'brin' AND c.relkind = 'i' AND c.reloptions @> ARRAY['autosummarize=on']
          AND c.relnamespace = current_schema()::regnamespace
    LOOP
        EXECUTE format('ALTER INDEX %s SET (autosummarize = off)', idx);
    END LOOP;
END $$;
