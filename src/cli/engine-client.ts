import { request } from 'node:http';
import { userInfo } from 'node:os';
import type { TenantryConfig } from '../config/config-schema.js';
import { DataDirInUseError } from '../db/open-database.js';
import { type ErrorCode, TenantryError } from '../errors.js';
import { type ControlResponse, controlSocketPath } from '../http/control-socket.js';
import { type OperationName, runOperation } from '../operations.js';
import type { Actor } from '../runtime/actor.js';
import { Tenantry } from '../tenantry.js';

export type OperationRunner = (name: OperationName, params?: Record<string, unknown>) => Promise<unknown>;

export function cliActor(): Actor {
  let id = 'unknown';
  try {
    id = userInfo().username;
  } catch {
    // No passwd entry (containers): the audit entry still says it came from the CLI.
  }
  return { kind: 'cli', id };
}

function callControlSocket(socketPath: string, body: string): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, method: 'POST', path: '/', headers: { 'content-type': 'application/json' } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ControlResponse);
          } catch (error) {
            reject(error);
          }
        });
        response.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function remoteRunner(dataDir: string): OperationRunner {
  const socketPath = controlSocketPath(dataDir);
  const actor = cliActor();
  return async (operation, params = {}) => {
    let reply: ControlResponse;
    try {
      reply = await callControlSocket(socketPath, JSON.stringify({ operation, params, actor }));
    } catch {
      throw new Error(
        `the embedded database in ${dataDir} is held by another process that does not answer on its control socket`,
      );
    }
    if (reply.ok) return reply.result;
    if (reply.error.code === 'internal') throw new Error(reply.error.message);
    throw new TenantryError(reply.error.code as ErrorCode, reply.error.message, { field: reply.error.field });
  };
}

/**
 * Runs CLI work against the engine: in this process when the database is free, or through the
 * running server's control socket when it holds the embedded database.
 */
export async function withOperations<T>(
  config: TenantryConfig,
  fn: (run: OperationRunner) => Promise<T>,
): Promise<T> {
  let tenantry: Tenantry;
  try {
    tenantry = await Tenantry.open({ config, redis: false });
  } catch (error) {
    if (error instanceof DataDirInUseError) return fn(remoteRunner(config.dataDir));
    throw error;
  }
  const context = { actor: cliActor() };
  try {
    return await fn((operation, params = {}) => runOperation(tenantry, operation, params, context));
  } finally {
    await tenantry.close();
  }
}
