import { createKey, listKeys, regenerateKey, revokeKey } from './key-operations.js';

/** A tenant's API keys: its key managers (keys:manage) in their tenant, operators in any. */
export const keyOperations = [listKeys, createKey, revokeKey, regenerateKey] as const;
