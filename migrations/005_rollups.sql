-- Latency histograms for the rollups (all flavors).
--
-- A rollup must give p50/p95/p99 that stay correct when a coarser rollup is built from a finer one, so
-- it stores a latency histogram, never percentiles: counts over fixed, log-spaced duration buckets, which
-- add up exactly (an hour's histogram is the element-wise sum of its minutes'). Percentiles are read from
-- the histogram at query time (the llm_metrics_* views).
--
-- Layout: bigint[242], 1-based.
--   slot 1        durations below 0.0625 ms (and negative ones)
--   slot 2..241   [2^((slot-34)/8), 2^((slot-33)/8)) ms: 8 buckets per doubling, 0.0625 ms .. 67108864 ms (18.6 h)
--   slot 242      67108864 ms and above
-- latency_quantile() answers the nearest-rank quantile (percentile_disc's definition) with the bucket's
-- geometric midpoint, so for durations in 0.0625 ms .. 18.6 h the relative error is at most
-- 2^(1/16) - 1 = 4.43 %; the views also clamp it into the group's exact [min, max].
--
-- The functions are PL/pgSQL and refer to built-in functions only: TimescaleDB refreshes continuous
-- aggregates with a restricted search_path, so they must not call each other by unqualified name.

CREATE FUNCTION latency_histogram_step(state bigint[], duration_ms double precision) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    slot integer;
BEGIN
    IF state IS NULL THEN
        state := array_fill(0::bigint, ARRAY[242]);
    END IF;
    IF duration_ms IS NULL THEN
        RETURN state;
    END IF;
    slot := CASE
        WHEN duration_ms < 0.0625 THEN 1
        WHEN duration_ms >= 67108864 THEN 242  -- and NaN, which PostgreSQL sorts above every number
        ELSE least(239, floor(8 * ln(duration_ms) / 0.6931471805599453)::integer + 32) + 2
    END;
    state[slot] := state[slot] + 1;
    RETURN state;
END
$$;

CREATE FUNCTION latency_histogram_add(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    slot integer;
BEGIN
    IF a IS NULL THEN
        RETURN b;
    END IF;
    IF b IS NULL THEN
        RETURN a;
    END IF;
    IF cardinality(a) <> cardinality(b) THEN
        RAISE EXCEPTION 'latency histograms of different layouts (% and % buckets) cannot be added',
            cardinality(a), cardinality(b);
    END IF;
    FOR slot IN 1 .. cardinality(a) LOOP
        a[slot] := a[slot] + b[slot];
    END LOOP;
    RETURN a;
END
$$;
COMMENT ON FUNCTION latency_histogram_add(bigint[], bigint[]) IS 'element-wise sum of two latency histograms';

-- latency_histogram(duration_ms): the histogram of a group of spans.
CREATE AGGREGATE latency_histogram(double precision) (
    SFUNC = latency_histogram_step,
    STYPE = bigint[],
    COMBINEFUNC = latency_histogram_add,
    PARALLEL = SAFE
);
-- latency_histogram_merge(histogram): the histogram of a group of groups (exact).
CREATE AGGREGATE latency_histogram_merge(bigint[]) (
    SFUNC = latency_histogram_add,
    STYPE = bigint[],
    COMBINEFUNC = latency_histogram_add,
    PARALLEL = SAFE
);

-- The q-quantile (0 <= q <= 1) of a histogram, in ms: the value of rank ceil(q * count), as
-- percentile_disc computes it, estimated by its bucket's geometric midpoint. NULL for an empty histogram.
CREATE FUNCTION latency_quantile(histogram bigint[], q double precision) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    total  bigint := 0;
    target bigint;
    seen   bigint := 0;
    slot   integer;
BEGIN
    IF NOT (q BETWEEN 0 AND 1) THEN
        RAISE EXCEPTION 'latency_quantile: q = % is outside [0, 1]', q;
    END IF;
    FOR slot IN 1 .. cardinality(histogram) LOOP
        total := total + histogram[slot];
    END LOOP;
    IF total = 0 THEN
        RETURN NULL;
    END IF;
    target := greatest(1, ceil(q * total)::bigint);
    FOR slot IN 1 .. cardinality(histogram) LOOP
        seen := seen + histogram[slot];
        IF seen >= target THEN
            RETURN CASE
                WHEN slot = 1 THEN 0.03125
                WHEN slot >= 242 THEN 67108864
                ELSE power(2::double precision, (slot - 33.5) / 8)
            END;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION latency_quantile(bigint[], double precision) IS
    'nearest-rank quantile of a latency histogram in ms; relative error <= 4.43 % for 0.0625 ms .. 18.6 h';
