\startpipeline
SELECT set_config('tenantry.tenant_id', '01a20f51-7b21-7793-9507-9e5e1b2672d1', true);
SELECT 1;
\endpipeline
