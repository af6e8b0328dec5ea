import { join } from 'node:path';
import { DatabaseTooNewError } from '../db/migrator.js';
import { SchemaDriftError } from '../entities/entity-schema.js';
import { ConfigError, type ErrorCode, errorCatalogue, isTenantryError, TenantryError } from '../errors.js';
import type { Actor } from '../runtime/actor.js';

/**
 * While the server holds the embedded database, CLI commands reach the engine through a Unix
 * socket in the data directory (mode 0600: whoever may use it may read the database files anyway).
 */
export function controlSocketPath(dataDir: string): string {
  return join(dataDir, 'control.sock');
}

/** One operation to run, by its catalogue name. */
export interface ControlRequest {
  readonly operation: string;
  readonly input: unknown;
  readonly actor: Actor;
}

/**
 * An error on the wire with what it takes to raise the same error on the other side: the CLI
 * exits with the same code whether the command ran in its own process or through the socket.
 */
export type WireError =
  | {
      readonly kind: 'tenantry';
      readonly code: string;
      readonly message: string;
      readonly field?: string;
      readonly retryAfterSeconds?: number;
    }
  | { readonly kind: 'config'; readonly key: string; readonly message: string }
  | { readonly kind: 'schema-drift'; readonly differences: readonly string[] }
  | { readonly kind: 'database-too-new'; readonly databaseVersion: number; readonly codeVersion: number }
  | { readonly kind: 'internal'; readonly message: string };

export type ControlResponse =
  | { readonly ok: true; readonly result: unknown }
  | { readonly ok: false; readonly error: WireError };

export function encodeError(error: unknown): WireError {
  if (isTenantryError(error)) {
    return {
      kind: 'tenantry',
      code: error.code,
      message: error.message,
      ...(error.field === undefined ? {} : { field: error.field }),
      ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
    };
  }
  if (error instanceof ConfigError) {
    return { kind: 'config', key: error.key, message: error.message.slice(error.key.length + 2) };
  }
  if (error instanceof SchemaDriftError) return { kind: 'schema-drift', differences: error.differences };
  if (error instanceof DatabaseTooNewError) {
    return {
      kind: 'database-too-new',
      databaseVersion: error.databaseVersion,
      codeVersion: error.codeVersion,
    };
  }
  return { kind: 'internal', message: error instanceof Error ? error.message : 'the operation failed' };
}

export function decodeError(wire: WireError): Error {
  switch (wire.kind) {
    case 'tenantry': {
      const code: ErrorCode = Object.hasOwn(errorCatalogue, wire.code)
        ? (wire.code as ErrorCode)
        : 'internal';
      return new TenantryError(code, wire.message, {
        ...(wire.field === undefined ? {} : { field: wire.field }),
        ...(wire.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: wire.retryAfterSeconds }),
      });
    }
    case 'config':
      return new ConfigError(wire.key, wire.message);
    case 'schema-drift':
      return new SchemaDriftError(wire.differences);
    case 'database-too-new':
      return new DatabaseTooNewError(wire.databaseVersion, wire.codeVersion);
    case 'internal':
      return new Error(wire.message);
  }
}
