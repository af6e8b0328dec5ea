\startpipeline
SELECT id, name, status, created_at, updated_at FROM app.projects WHERE tenant_id = '00000000-0000-0000-0000-000000000001'::uuid AND id = '11111111-1111-1111-1111-111111111111'::uuid;
\endpipeline
