-- A read-only role for Grafana's PostgreSQL data source (config/grafana/provisioning/datasources): Grafana
-- runs the dashboards' SQL as this role, and a dashboard editor can type any SQL.
-- docker-compose.yml runs this file once, when the database volume is created, as the database owner
-- (POSTGRES_USER = observatory), before the receiver's first start creates the tables and views; the
-- default privileges below give the role SELECT on everything `observatory` creates from then on.
-- Elsewhere: run it as the role the receiver migrates with (replace `observatory`), and choose a password.
DO $$
BEGIN
    CREATE ROLE grafana_reader LOGIN PASSWORD 'grafana_reader';
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- already there (a second database in the same cluster)
END
$$;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE observatory IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;
