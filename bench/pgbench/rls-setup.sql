-- A row-level table like Tenantry's `app.projects`, with its two policies, for rls-by-id.sql and
-- plain-by-id.sql. Run once in a scratch database:
--   createdb -h 127.0.0.1 -U postgres pgb_rls && psql -h 127.0.0.1 -U postgres -d pgb_rls -f bench/pgbench/rls-setup.sql
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_rt') THEN CREATE ROLE bench_rt NOLOGIN; END IF;
END $$;
GRANT bench_rt TO postgres;
CREATE SCHEMA app;
CREATE TABLE app.projects (
  tenant_id uuid NOT NULL, id uuid NOT NULL, name text NOT NULL, status text NOT NULL DEFAULT 'active',
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
INSERT INTO app.projects (tenant_id, id, name)
  SELECT ('00000000-0000-0000-0000-' || lpad((g % 10)::text, 12, '0'))::uuid, gen_random_uuid(), 'p' || g
    FROM generate_series(1, 10000) g;
INSERT INTO app.projects (tenant_id, id, name)
  VALUES ('00000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 'x');
ALTER TABLE app.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.projects FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON app.projects AS PERMISSIVE FOR ALL
  USING (tenant_id = nullif(current_setting('tenantry.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = nullif(current_setting('tenantry.tenant_id', true), '')::uuid);
CREATE POLICY tenant_isolation ON app.projects AS RESTRICTIVE FOR ALL
  USING (tenant_id = nullif(current_setting('tenantry.tenant_id', true), '')::uuid)
  WITH CHECK (tenant_id = nullif(current_setting('tenantry.tenant_id', true), '')::uuid);
GRANT USAGE ON SCHEMA app TO bench_rt;
GRANT SELECT ON app.projects TO bench_rt;
ANALYZE;
