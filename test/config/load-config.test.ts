import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load-config.js';
import { ConfigError } from '../../src/errors.js';

describe('loading the config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-iterations-'));
  const load = (content: Record<string, unknown>) => {
    const file = join(dir, 'tenantry.config.yaml');
    writeFileSync(file, YAML.stringify(content));
    return loadConfig({ file, env: {}, overrides: {} });
  };

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('default to the floor of 100,000, which is also the least a file may set', () => {
    expect(load({}).apiKeys.iterations).toBe(100_000);
    expect(load({ apiKeys: { iterations: 600_000 } }).apiKeys.iterations).toBe(600_000);
    expect(() => load({ apiKeys: { iterations: 99_999 } })).toThrow(ConfigError);
    expect(() => load({ apiKeys: { iterations: 99_999 } })).toThrow(/apiKeys\.iterations/);
  });

  it('size tenant database pools within the bound across all tenant databases', () => {
    expect(load({}).database.connectionsPerTenantDatabase).toBe(2);
    expect(
      load({ database: { connectionsPerTenantDatabase: 8 } }).database.connectionsPerTenantDatabase,
    ).toBe(8);
    expect(() => load({ database: { maxTenantConnections: 4, connectionsPerTenantDatabase: 5 } })).toThrow(
      /database\.connectionsPerTenantDatabase: is 5, more than database\.maxTenantConnections \(4\)/,
    );
  });

  it('names the setting that was given when it is wrong: the flag, the variable or the key', () => {
    const missing = join(dir, 'no-such.yaml');
    expect(() => loadConfig({ file: missing, env: {} })).toThrow(/^--config: config file .* does not exist/);
    expect(() => loadConfig({ env: { TENANTRY_CONFIG: missing } })).toThrow(/^TENANTRY_CONFIG: /);
    expect(() => load({ database: { adminUrl: 'postgres://owner@db/app' } })).toThrow(
      /^database\.adminUrl: /,
    );
    expect(() => load({ database: { url: 'mysql://db/app' } })).toThrow(/^database\.url: /);
    const file = join(dir, 'tenantry.config.yaml');
    expect(() => loadConfig({ file, env: { DATABASE_URL: 'mysql://db/app' } })).toThrow(/^DATABASE_URL: /);
  });
});
