import pg from 'pg';

/** A tenant the benchmark calls with its own API key, and its project ids. */
export interface KeyedTenant {
  readonly key: string;
  readonly ids: readonly string[];
}

/** Adds `count` row tenants with `rowsEach` projects straight in SQL (the API would hash a key each). */
export async function addRowTenants(url: string, count: number, rowsEach: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(
      `INSERT INTO tenantry.tenants (id, slug, name, status, isolation)
       SELECT gen_random_uuid(), 'filler-' || n, 'Filler ' || n, 'active', 'row' FROM generate_series(1, $1) AS n`,
      [count],
    );
    await client.query(
      `INSERT INTO app.projects (tenant_id, id, name)
       SELECT t.id, gen_random_uuid(), 'p-' || n FROM tenantry.tenants t, generate_series(1, $1) AS n
        WHERE t.slug LIKE 'filler-%'`,
      [rowsEach],
    );
    await client.query('ANALYZE app.projects');
  } finally {
    await client.end();
  }
}

/** Tenants among the fillers given an API key each (hashed like any key), with their project ids. */
export async function keyedFillers(
  url: string,
  count: number,
  iterations: number,
  log: (line: string) => void,
) {
  const { insertApiKey, prepareApiKey } = await import('../../src/auth/api-key-store.js');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string; ids: string[] }>(
      `SELECT t.id, array_agg(p.id::text) AS ids FROM tenantry.tenants t JOIN app.projects p ON p.tenant_id = t.id
        WHERE t.slug LIKE 'filler-%' GROUP BY t.id ORDER BY t.id LIMIT $1`,
      [count],
    );
    const keyed: KeyedTenant[] = [];
    const queryable = {
      query: async (sql: string, params?: readonly unknown[]) => {
        const result = await client.query(sql, params as unknown[]);
        return { rows: result.rows, rowCount: result.rowCount ?? 0 };
      },
    };
    // Eight hashes at a time: the thread pool runs four, the rest wait their turn.
    for (let start = 0; start < rows.length; start += 8) {
      const batch = rows.slice(start, start + 8);
      const prepared = await Promise.all(batch.map(() => prepareApiKey(iterations)));
      for (const [index, tenant] of batch.entries()) {
        const issued = await insertApiKey(queryable, tenant.id, prepared[index]!);
        keyed.push({ key: issued.key, ids: tenant.ids });
      }
      if ((start / 8) % 25 === 0) log(`  keys for ${keyed.length} of ${rows.length} tenants`);
    }
    return keyed;
  } finally {
    await client.end();
  }
}

/** One request per tenant, eight at a time: each key's first use pays its slow hash here, not in a round. */
export async function warmKeys(url: string, tenants: readonly KeyedTenant[]) {
  for (let start = 0; start < tenants.length; start += 8) {
    await Promise.all(
      tenants.slice(start, start + 8).map(async (tenant) => {
        const response = await fetch(`${url}/api/v1/projects/${tenant.ids[0]}`, {
          headers: { 'x-api-key': tenant.key },
        });
        if (!response.ok)
          throw new Error(`warming a spread tenant: ${response.status} ${await response.text()}`);
      }),
    );
  }
}
