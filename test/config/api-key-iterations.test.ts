import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load-config.js';
import { ConfigError } from '../../src/errors.js';

describe('API key iterations in the config file', () => {
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
});
