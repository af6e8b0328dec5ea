import { existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { isTenantryError } from '../errors.js';
import { isOperationName, runOperation } from '../operations.js';
import type { Actor } from '../runtime/actor.js';
import type { Tenantry } from '../tenantry.js';

const MAX_REQUEST_BYTES = 1024 * 1024;

export function controlSocketPath(dataDir: string): string {
  return join(dataDir, 'control.sock');
}

export interface ControlRequest {
  readonly operation: string;
  readonly params: Record<string, unknown>;
  readonly actor: Actor;
}

export type ControlResponse =
  | { readonly ok: true; readonly result: unknown }
  | { readonly ok: false; readonly error: { code: string; message: string; field?: string } };

function cliActor(value: unknown): Actor {
  const id = (value as { id?: unknown } | undefined)?.id;
  return { kind: 'cli', id: typeof id === 'string' && id.length <= 100 ? id : 'unknown' };
}

/**
 * While the server holds the embedded database, CLI commands reach the engine through this Unix
 * socket in the data directory (mode 0600: whoever may use it may read the database files anyway).
 */
export async function startControlSocket(tenantry: Tenantry, dataDir: string): Promise<Server> {
  const path = controlSocketPath(dataDir);
  // We hold the data directory lock, so a socket file left here is from a process that died.
  if (existsSync(path)) unlinkSync(path);
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) request.destroy();
      else chunks.push(chunk);
    });
    request.on('end', async () => {
      let reply: ControlResponse;
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<ControlRequest>;
        if (!isOperationName(body.operation)) throw new Error('unknown operation');
        const result = await runOperation(tenantry, body.operation, body.params ?? {}, {
          actor: cliActor(body.actor),
        });
        reply = { ok: true, result };
      } catch (error) {
        reply = isTenantryError(error)
          ? {
              ok: false,
              error: {
                code: error.code,
                message: error.message,
                ...(error.field ? { field: error.field } : {}),
              },
            }
          : {
              ok: false,
              error: { code: 'internal', message: error instanceof Error ? error.message : 'failed' },
            };
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path, readableAll: false, writableAll: false }, () => resolve());
  });
  return server;
}
