import { userInfo } from 'node:os';
import type { TenantryConfig } from '../config/config-schema.js';
import { remoteOperations } from '../control/control-client.js';
import { Engine } from '../engine/engine.js';
import { DataDirInUseError } from '../engine/open-database.js';
import type { InputOf, Operation, OutputOf } from '../operations/operation.js';
import { type RunOptions, runOperation } from '../operations/run-operation.js';
import type { Actor } from '../runtime/actor.js';

/** Runs one operation of the catalogue, typed by its schemas. */
export type OperationRunner = <O extends Operation>(
  operation: O,
  input: InputOf<O>,
  /** Progress comes in process only; through the control socket the server runs it unseen. */
  options?: RunOptions,
) => Promise<OutputOf<O>>;

export function cliActor(): Actor {
  let id = 'unknown';
  try {
    id = userInfo().username;
  } catch {
    // No passwd entry (containers): the audit entry still says it came from the CLI.
  }
  return { kind: 'cli', id };
}

/**
 * Runs CLI work against the engine: in this process when the database is free, or through the
 * running server's control socket when it holds the embedded database.
 */
export async function withOperations<T>(
  config: TenantryConfig,
  fn: (run: OperationRunner) => Promise<T>,
): Promise<T> {
  let engine: Engine;
  try {
    // Only init-db and serve create the embedded database: a command run elsewhere fails instead.
    engine = await Engine.open({ config, redis: false, createDataDir: false });
  } catch (error) {
    if (error instanceof DataDirInUseError) return fn(remoteOperations(config.dataDir, cliActor()));
    throw error;
  }
  const context = { actor: cliActor() };
  try {
    return await fn((operation, input, options) =>
      runOperation(engine, operation, input, { kind: 'operator', context }, options),
    );
  } finally {
    await engine.close();
  }
}
