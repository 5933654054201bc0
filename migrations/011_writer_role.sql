-- Least privilege (all flavors): a NOLOGIN group role with what `llm-observatory-receiver run` needs,
-- apart from the owner that `migrate` uses. Operators create a login in it and give that login's URL to
-- the receiver (README, "Least privilege in the database"):
--   CREATE ROLE observatory_ingest LOGIN PASSWORD '...' IN ROLE observatory_writer;
--
-- What the role may do, and why:
--   llm_traces, llm_metrics, llm_logs   SELECT, INSERT: COPY rows in; INSERT ... ON CONFLICT DO NOTHING from a
--                                       session-private staging table (LIKE the table: needs SELECT) for retries
--   dead_letters                        INSERT (+ its id sequence): rows the database refused, with the error
--   model_pricing                       SELECT: prices for cost (they are seeded by `migrate`, run as the owner)
--   api_keys                            SELECT of what checking a key needs (hashes, never keys), and UPDATE of
--                                       last_used_at only; projects SELECT
--   schema_migrations                   SELECT: readiness waits until every migration is applied
--   rollup_watermarks                   SELECT (native): /health reports the rollups' progress
--   the database                        CONNECT, TEMPORARY (the staging tables)
-- What it may not do: DELETE, UPDATE or TRUNCATE rows, change prices or keys, create or drop anything.
-- Native flavor: the maintenance task creates and drops partitions, which PostgreSQL allows only to the
-- tables' owner; it runs on its own connection (maintenance.database_url = the owner's URL), or as
-- `db maintain` run by the owner.
--
-- The grants are a function, so an administrator can apply them when this migration could not create
-- the role (the owner lacks CREATEROLE: the migration then says so and grants nothing), and later
-- migrations can re-apply them for tables they add: SELECT grant_writer_privileges('observatory_writer');
CREATE FUNCTION grant_writer_privileges(writer name) RETURNS void
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
END
$$;
COMMENT ON FUNCTION grant_writer_privileges(name) IS
    'grants a role what `run` needs (migration 011); re-run it after adding a table the writers use';
REVOKE EXECUTE ON FUNCTION grant_writer_privileges(name) FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'observatory_writer') THEN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
            RAISE NOTICE 'role observatory_writer not created: % may not create roles. An administrator can run '
                'CREATE ROLE observatory_writer NOLOGIN; then, as %: SELECT grant_writer_privileges(''observatory_writer'');',
                current_user, current_user;
            RETURN;
        END IF;
        CREATE ROLE observatory_writer NOLOGIN;
        COMMENT ON ROLE observatory_writer IS 'what llm-observatory-receiver run needs (migration 011)';
    END IF;
    PERFORM grant_writer_privileges('observatory_writer');
END
$$;
