\startpipeline
SELECT set_config('role', 'tenantry_runtime', true), set_config('tenantry.tenant_id', '01a20f51-7b21-7793-9507-9e5e1b2672d1', true), set_config('search_path', '"app", "shared"', true), set_config('statement_timeout', '5000ms', true);
SELECT 1;
\endpipeline
