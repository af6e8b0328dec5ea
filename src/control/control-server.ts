import { existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Engine } from '../engine/engine.js';
import { operationNamed } from '../operations/catalogue.js';
import { runOperation } from '../operations/run-operation.js';
import type { Actor } from '../runtime/actor.js';
import {
  type ControlRequest,
  type ControlResponse,
  controlSocketPath,
  encodeError,
} from './control-protocol.js';

const MAX_REQUEST_BYTES = 1024 * 1024;

function cliActor(value: unknown): Actor {
  const id = (value as { id?: unknown } | undefined)?.id;
  return { kind: 'cli', id: typeof id === 'string' && id.length <= 100 ? id : 'unknown' };
}

async function answer(engine: Engine, raw: string): Promise<ControlResponse> {
  try {
    const request = JSON.parse(raw) as Partial<ControlRequest>;
    const operation = operationNamed(request.operation);
    if (!operation) throw new Error(`unknown operation ${String(request.operation).slice(0, 100)}`);
    const result = await runOperation(engine, operation, request.input, {
      kind: 'operator',
      context: { actor: cliActor(request.actor) },
    });
    return { ok: true, result: result ?? null };
  } catch (error) {
    return { ok: false, error: encodeError(error) };
  }
}

/** The control socket of a server that holds the embedded database: the CLI runs operations through it. */
export async function startControlSocket(engine: Engine, dataDir: string): Promise<Server> {
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
      const reply = await answer(engine, Buffer.concat(chunks).toString('utf8'));
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path, readableAll: false, writableAll: false }, () => resolve());
  });
  return server;
}
