import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { reportError } from '../../src/cli/main.js';
import { createOutput } from '../../src/cli/output.js';
import { decodeError, encodeError } from '../../src/control/control-protocol.js';
import { DatabaseTooNewError } from '../../src/db/migrator.js';
import { SchemaDriftError } from '../../src/entities/entity-schema.js';
import { ConfigError, TenantryError } from '../../src/errors.js';

/** What the CLI prints and exits with for an error. */
function reported(error: unknown): { code: number; stderr: string } {
  let stderr = '';
  const sink = new Writable({
    write(chunk, _encoding, done) {
      stderr += String(chunk);
      done();
    },
  });
  const code = reportError(error, createOutput(sink, sink));
  return { code, stderr };
}

/** The error as the CLI sees it when the command ran in the server, through the control socket. */
function throughSocket(error: unknown): unknown {
  return decodeError(JSON.parse(JSON.stringify(encodeError(error))));
}

describe('errors through the control socket', () => {
  const cases: [string, unknown, number][] = [
    [
      'a declaration that cannot be migrated',
      new TenantryError('validation_failed', 'the declared entities cannot be migrated', {
        field: 'entities',
      }),
      2,
    ],
    [
      'an invalid input',
      new TenantryError('validation_failed', 'slug must be 3 to 63 characters', { field: 'slug' }),
      1,
    ],
    ['a missing tenant', new TenantryError('tenant_not_found', 'no tenant "nope"'), 1],
    [
      'a rate limit with its retry hint',
      new TenantryError('rate_limited', 'too many', { retryAfterSeconds: 7 }),
      1,
    ],
    [
      'a config the database contradicts',
      new ConfigError('tenants.0.hosts.0', 'host a.example.com belongs to another tenant'),
      2,
    ],
    ['tables that drifted from the entities', new SchemaDriftError(['app.tasks: missing column due']), 2],
    ['a database newer than the code', new DatabaseTooNewError(9, 6), 1],
    ['anything else', new Error('boom'), 1],
  ];

  it.each(cases)('%s: the same exit code and message as in the CLI’s own process', (_name, error, code) => {
    const local = reported(error);
    expect(local.code).toBe(code);
    expect(reported(throughSocket(error))).toEqual(local);
  });

  it('keeps the code, field and retry hint of a refusal', () => {
    const decoded = throughSocket(
      new TenantryError('rate_limited', 'too many', { retryAfterSeconds: 7, field: 'x' }),
    );
    expect(decoded).toBeInstanceOf(TenantryError);
    expect(decoded).toMatchObject({ code: 'rate_limited', field: 'x', retryAfterSeconds: 7 });
  });

  it('an unknown code from a newer server is an internal error, not a crash', () => {
    const decoded = decodeError({ kind: 'tenantry', code: 'from_the_future', message: 'new' });
    expect(decoded).toMatchObject({ code: 'internal', message: 'new' });
  });
});
