import { request } from 'node:http';
import Value from 'typebox/value';
import type { InputOf, Operation, OutputOf } from '../operations/operation.js';
import type { Actor } from '../runtime/actor.js';
import { type ControlResponse, controlSocketPath, decodeError } from './control-protocol.js';

function call(socketPath: string, body: string): Promise<ControlResponse> {
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

/**
 * Runs operations in the server that holds the embedded database, through its control socket:
 * the same operation, with the same checks, and the same error (so the same exit code) as in
 * this process.
 */
export function remoteOperations(dataDir: string, actor: Actor) {
  const socketPath = controlSocketPath(dataDir);
  return async <O extends Operation>(operation: O, input: InputOf<O>): Promise<OutputOf<O>> => {
    let reply: ControlResponse;
    try {
      reply = await call(socketPath, JSON.stringify({ operation: operation.name, input, actor }));
    } catch {
      throw new Error(
        `the embedded database in ${dataDir} is held by another process that does not answer on its control socket`,
      );
    }
    if (!reply.ok) throw decodeError(reply.error);
    // The server runs the same catalogue: an answer of another shape is a version mismatch.
    if (!Value.Check(operation.output, reply.result)) {
      throw new Error(
        `the running server answered ${operation.name} in another shape: is it another version?`,
      );
    }
    return reply.result as OutputOf<O>;
  };
}
