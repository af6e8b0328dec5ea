\startpipeline
SELECT set_config('role', 'bench_rt', true), set_config('tenantry.tenant_id', '00000000-0000-0000-0000-000000000001', true), set_config('search_path', '"app"', true), set_config('statement_timeout', '5000ms', true);
SELECT id, name, status, created_at, updated_at FROM "app"."projects" WHERE id = '11111111-1111-1111-1111-111111111111'::uuid;
\endpipeline
