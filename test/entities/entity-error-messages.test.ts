import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import type { EntityDb } from '../../src/entities/entity-db.js';
import { EntityRepository } from '../../src/entities/entity-repository.js';
import { listStatement } from '../../src/entities/list-query.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

/** The messages a client reads when a list filter or an enum value is wrong: what to send instead. */
const ENTITIES = normaliseEntities({
  tickets: {
    scope: 'tenant',
    fields: {
      title: { type: 'text', required: true },
      state: { type: 'enum', values: ['open', 'closed'], required: true },
      priority: { type: 'enum', values: ['low', 'high'] },
      due: { type: 'timestamp' },
    },
  },
});
const tickets = ENTITIES[0]!;

describe('list filters on date-time fields', () => {
  const source = { table: 'tickets', selectList: '*', tenantId: '0b7c6a52-9a52-4c4b-8f0e-3f9a3c1d2e01' };
  const refusal = (query: Record<string, string>): string => {
    try {
      listStatement(tickets, source, query);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('the filter was accepted');
  };

  it('a bare date asks for a date-time with an offset, naming the parameter', () => {
    expect(refusal({ 'created_at[gte]': '2026-01-01' })).toBe(
      'created_at[gte] must be a date-time with a time zone offset, e.g. 2026-01-01T00:00:00Z, not a date alone',
    );
  });

  it('a date-time without an offset says the offset is needed', () => {
    expect(refusal({ 'due[lte]': '2026-01-01T10:30:00' })).toBe(
      'due[lte] needs a time zone offset (Z or ±hh:mm), e.g. 2026-01-01T10:30:00Z',
    );
    expect(refusal({ updated_at: '2026-01-01 10:30' })).toBe(
      'updated_at needs a time zone offset (Z or ±hh:mm), e.g. 2026-01-01 10:30Z',
    );
  });

  it('an offset written otherwise, or out of range, says so', () => {
    expect(refusal({ 'due[gte]': '2026-01-01T10:30:00+0100' })).toBe(
      'due[gte] must end in a time zone offset written Z or ±hh:mm, e.g. 2026-01-01T00:00:00Z',
    );
    expect(refusal({ 'due[gte]': '2026-01-01T10:30:00+16:00' })).toBe(
      'due[gte] has a time zone offset out of range (at most ±15:59)',
    );
    expect(refusal({ 'due[gte]': 'yesterday' })).toBe(
      'due[gte] must be an ISO 8601 date-time with a time zone offset, e.g. 2026-01-01T00:00:00Z',
    );
  });

  it('takes a date-time with an offset', () => {
    for (const value of [
      '2026-01-01T00:00:00Z',
      '2026-01-01T00:00+02:00',
      '2026-01-01T00:00:00.123456-05:30',
    ]) {
      expect(listStatement(tickets, source, { 'created_at[gte]': value }).values).toContain(value);
    }
  });
});

describe('an enum value outside its values, through the repository', () => {
  const unusable = new Proxy({} as EntityDb, {
    get: () => {
      throw new Error('the database was used');
    },
  });

  it('lists the allowed values', async () => {
    const repository = new EntityRepository(tickets);
    await expect(repository.create(unusable, { title: 't', state: 'pending' })).rejects.toThrow(
      'state must be one of open, closed',
    );
    await expect(
      repository.create(unusable, { title: 't', state: 'open', priority: 'urgent' }),
    ).rejects.toThrow('priority must be one of low, high, or null');
  });
});

describe.each(DRIVERS)('messages a client reads, on %s', (driver) => {
  let env: TestEnv;
  let tenant: { key: string };
  const as = () => ({ 'x-api-key': tenant.key });

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: ENTITIES });
    tenant = await env.createTenant('messages-co');
  });
  afterAll(async () => {
    await env?.close();
  });

  it('a date-time filter without an offset: 400 saying an offset is required', async () => {
    const response = await env.inject({ url: '/api/v1/tickets?created_at[gte]=2026-01-01', headers: as() });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({
      code: 'validation_failed',
      field: 'created_at[gte]',
      detail:
        'created_at[gte] must be a date-time with a time zone offset, e.g. 2026-01-01T00:00:00Z, not a date alone',
    });
    const noOffset = await env.inject({
      url: `/api/v1/tickets?due[lte]=${encodeURIComponent('2026-01-01T00:00:00')}`,
      headers: as(),
    });
    expect(noOffset.json().detail).toBe(
      'due[lte] needs a time zone offset (Z or ±hh:mm), e.g. 2026-01-01T00:00:00Z',
    );
  });

  it('an enum field: 400 listing the allowed values', async () => {
    const required = await env.inject({
      method: 'POST',
      url: '/api/v1/tickets',
      headers: as(),
      payload: { title: 'A', state: 'pending' },
    });
    expect(required.statusCode).toBe(400);
    expect(required.json()).toMatchObject({
      code: 'validation_failed',
      field: 'state',
      detail: 'state must be one of open, closed',
    });
    const optional = await env.inject({
      method: 'POST',
      url: '/api/v1/tickets',
      headers: as(),
      payload: { title: 'A', state: 'open', priority: 'urgent' },
    });
    expect(optional.json().detail).toBe('priority must be one of low, high, or null');
  });

  it('an isolation level that does not exist: 400 listing the levels', async () => {
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Cluster',
      slug: 'cluster-co',
      isolation: 'cluster',
    });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({
      code: 'validation_failed',
      field: 'isolation',
      detail: 'isolation must be one of row, schema, database',
    });
  });
});
