import { type Agent, request } from 'node:http';

/** One GET through `agent`, body drained; resolves with the status, or 0 if the request failed. */
export function httpGet(
  agent: Agent,
  target: URL,
  path: string,
  headers: Record<string, string>,
): Promise<number> {
  return new Promise((resolve) => {
    const outgoing = request(
      { agent, host: target.hostname, port: target.port, path, headers, method: 'GET' },
      (response) => {
        response.resume();
        response.once('end', () => resolve(response.statusCode ?? 0));
      },
    );
    outgoing.once('error', () => resolve(0));
    outgoing.end();
  });
}
