-- What the read API (receiver/query/, query.endpoint) needs beyond migration 009's span indexes (all
-- flavors). Each index was measured both ways (README, "Read API"): what it saves a query at millions
-- of spans (`python -m benchmarks.query --variant ...`) and what it costs an insert as the table grows
-- (`python -m benchmarks.growth --table ...`).

-- GET /traces/{id}: the log records of a trace. Without it, a trace's logs are a scan of every log
-- partition / chunk. Written at random like llm_traces_trace_id_idx (a trace id is random), 16 bytes
-- per record deduplicated across a trace's records; records without a trace id cost nothing.
CREATE INDEX llm_logs_trace_id_idx ON llm_logs (trace_id) WHERE trace_id IS NOT NULL;

-- (GET /metrics: see 013_read_api.native.sql.)

-- GET /usage?user_id=...: one user's rows of the per-user rollup, instead of every user's rows in the
-- window. User ids are stored with at most 512 bytes since migration 009; older longer ones are left
-- out of the index, as above.
CREATE INDEX cost_analysis_hourly_store_user_bucket_idx ON cost_analysis_hourly_store (user_id, bucket)
    WHERE octet_length(user_id) <= 512;

-- Histogram merges and quantiles that read only the buckets between a group's min and max latency.
--
-- latency_histogram_merge and latency_quantile (migration 005) visit all 242 buckets of every row: about
-- 30-100 µs per row in PL/pgSQL, which made /usage over a day of the per-user rollup (tens of thousands
-- of rows, most holding one or two spans) take seconds. Every count of a rollup row lies between the
-- buckets of its min_latency_ms and max_latency_ms, so these visit only that range (1-2 buckets for a
-- user's hour, a few dozen for a busy minute). Exact all the same: each function checks that the range
-- held the row's `request_count` and otherwise reads every bucket. Same results as
-- latency_histogram_merge / latency_quantile, clamped into [min, max] as the views clamp.

CREATE FUNCTION latency_histogram_add_within(
    state bigint[], histogram bigint[], min_ms double precision, max_ms double precision, total bigint
) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    lo integer := 1;
    hi integer;
    slot integer;
    count bigint;
    seen bigint := 0;
BEGIN
    IF histogram IS NULL THEN
        RETURN state;
    END IF;
    hi := cardinality(histogram);
    IF state IS NULL THEN
        state := array_fill(0::bigint, ARRAY[hi]);
    ELSIF cardinality(state) <> hi THEN
        RAISE EXCEPTION 'latency histograms of different layouts (% and % buckets) cannot be added',
            cardinality(state), hi;
    END IF;
    IF min_ms IS NOT NULL AND max_ms IS NOT NULL AND hi = 242 THEN
        lo := CASE WHEN min_ms < 0.0625 THEN 1 WHEN min_ms >= 67108864 THEN 242
                   ELSE least(239, floor(8 * ln(min_ms) / 0.6931471805599453)::integer + 32) + 2 END;
        hi := CASE WHEN max_ms < 0.0625 THEN 1 WHEN max_ms >= 67108864 THEN 242
                   ELSE least(239, floor(8 * ln(max_ms) / 0.6931471805599453)::integer + 32) + 2 END;
    END IF;
    FOR slot IN lo .. hi LOOP
        count := histogram[slot];
        IF count <> 0 THEN
            state[slot] := state[slot] + count;
            seen := seen + count;
        END IF;
    END LOOP;
    IF total IS NULL OR seen <> total THEN  -- counts outside [min, max]: not a rollup row; add the rest
        FOR slot IN 1 .. cardinality(histogram) LOOP
            IF slot < lo OR slot > hi THEN
                state[slot] := state[slot] + histogram[slot];
            END IF;
        END LOOP;
    END IF;
    RETURN state;
END
$$;

-- latency_histogram_merge_within(histogram, min_latency_ms, max_latency_ms, request_count): the same
-- histogram as latency_histogram_merge(histogram), computed from the buckets in [min, max] of each row.
CREATE AGGREGATE latency_histogram_merge_within(bigint[], double precision, double precision, bigint) (
    SFUNC = latency_histogram_add_within,
    STYPE = bigint[],
    PARALLEL = SAFE
);

-- latency_quantiles(histogram, min_ms, max_ms, count, qs): latency_quantile(histogram, q) for every q of
-- qs (ascending) in one pass over the buckets in [min, max], each clamped into [min_ms, max_ms] as the
-- rollup views clamp; NULL for an empty histogram.
CREATE FUNCTION latency_quantiles(
    histogram bigint[], min_ms double precision, max_ms double precision, total bigint, qs double precision[]
) RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    lo integer := 1;
    hi integer;
    slot integer;
    seen bigint := 0;
    counted bigint := 0;
    q integer := 1;
    target bigint;
    estimate double precision;
    result double precision[] := '{}';
BEGIN
    IF histogram IS NULL OR qs IS NULL THEN
        RETURN NULL;
    END IF;
    hi := cardinality(histogram);
    IF min_ms IS NOT NULL AND max_ms IS NOT NULL AND hi = 242 THEN
        lo := CASE WHEN min_ms < 0.0625 THEN 1 WHEN min_ms >= 67108864 THEN 242
                   ELSE least(239, floor(8 * ln(min_ms) / 0.6931471805599453)::integer + 32) + 2 END;
        hi := CASE WHEN max_ms < 0.0625 THEN 1 WHEN max_ms >= 67108864 THEN 242
                   ELSE least(239, floor(8 * ln(max_ms) / 0.6931471805599453)::integer + 32) + 2 END;
        FOR slot IN lo .. hi LOOP
            counted := counted + histogram[slot];
        END LOOP;
    END IF;
    IF total IS NULL OR counted <> total THEN  -- not every count in [min, max]: read every bucket
        lo := 1;
        hi := cardinality(histogram);
        counted := 0;
        FOR slot IN lo .. hi LOOP
            counted := counted + histogram[slot];
        END LOOP;
    END IF;
    IF counted = 0 THEN
        RETURN NULL;
    END IF;
    FOR slot IN lo .. hi LOOP
        seen := seen + histogram[slot];
        WHILE q <= cardinality(qs) LOOP
            IF NOT (qs[q] BETWEEN 0 AND 1) THEN
                RAISE EXCEPTION 'latency_quantiles: q = % is outside [0, 1]', qs[q];
            END IF;
            target := greatest(1, ceil(qs[q] * counted)::bigint);
            EXIT WHEN seen < target;
            estimate := CASE WHEN slot = 1 THEN 0.03125 WHEN slot >= 242 THEN 67108864
                             ELSE power(2::double precision, (slot - 33.5) / 8) END;
            result := result || least(greatest(estimate, min_ms), max_ms);
            q := q + 1;
        END LOOP;
        EXIT WHEN q > cardinality(qs);
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION latency_quantiles(bigint[], double precision, double precision, bigint, double precision[]) IS
    'latency_quantile for several q at once, reading only the buckets in [min, max]; clamped into [min, max]';

-- The read API runs on `run`'s own database login: with a writer login (migration 011) it reads the
-- rollups as well. grant_writer_privileges gains SELECT on the four rollup views (a view is read with its
-- owner's rights: the stores need no grant) and is re-applied to observatory_writer where it exists.
CREATE OR REPLACE FUNCTION grant_writer_privileges(writer name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), writer);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), writer);
    EXECUTE format('GRANT SELECT, INSERT ON llm_traces, llm_metrics, llm_logs TO %I', writer);
    EXECUTE format('GRANT INSERT ON dead_letters TO %I', writer);
    EXECUTE format('GRANT USAGE ON SEQUENCE dead_letters_id_seq TO %I', writer);
    EXECUTE format('GRANT SELECT ON model_pricing, projects, schema_migrations TO %I', writer);
    EXECUTE format(
        'GRANT SELECT (id, project_id, key_hash, key_prefix, scopes, rate_items_per_s, expires_at, revoked_at) '
        'ON api_keys TO %I', writer);
    EXECUTE format('GRANT UPDATE (last_used_at) ON api_keys TO %I', writer);
    IF to_regclass('rollup_watermarks') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON rollup_watermarks TO %I', writer);
    END IF;
    EXECUTE format(
        'GRANT SELECT ON llm_metrics_1min, llm_metrics_1hour, llm_metrics_1day, cost_analysis_hourly TO %I', writer);
END
$$;
COMMENT ON FUNCTION grant_writer_privileges(name) IS
    'grants a role what `run` needs (migrations 011, 013: the read API reads the rollup views); '
    're-run it after adding a table the writers use';
REVOKE EXECUTE ON FUNCTION grant_writer_privileges(name) FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'observatory_writer') THEN
        PERFORM grant_writer_privileges('observatory_writer');
    END IF;
END
$$;
