import type { FastifyInstance } from 'fastify';

/**
 * How every benchmark server starts and stops: listens on a free port of 127.0.0.1, prints
 * `READY <url>` (child-server.ts waits for it), and on SIGTERM closes the app, then `cleanup`
 * (a pool, an engine), and exits.
 */
export async function serveUntilTerm(app: FastifyInstance, cleanup: () => Promise<unknown> = async () => {}) {
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`READY ${url}\n`);
  process.once('SIGTERM', () => {
    app
      .close()
      .then(cleanup)
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  });
}
