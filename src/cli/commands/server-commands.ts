import type { Command } from 'commander';
import { DataDirInUseError, openDatabase } from '../../engine/open-database.js';
import { prepareDatabase } from '../../isolation/entity-storage.js';
import { type CliContext, command, type GlobalOptions, port } from '../cli-context.js';

/** `tenantry init-db` and `tenantry serve`: the database made ready, and the HTTP server. */
export function serverCommands(program: Command, cli: CliContext): void {
  const { out } = cli;
  command(
    program,
    'init-db',
    'apply the control-plane migrations, create the runtime role and the entity tables',
    false,
  ).action(async (options: GlobalOptions) => {
    const config = cli.config(options);
    let db: Awaited<ReturnType<typeof openDatabase>>;
    try {
      db = await openDatabase(config);
    } catch (error) {
      if (error instanceof DataDirInUseError) {
        out.line(
          'the embedded database is held by a running server, which migrated it at start: nothing to do',
        );
        return;
      }
      throw error;
    }
    try {
      const report = await prepareDatabase(db, config, false);
      if (report.applied.length === 0) out.line(`control plane is up to date (version ${report.to})`);
      for (const step of report.applied) out.line(`applied ${step.version}: ${step.name}`);
      out.line(`runtime role ${config.database.runtimeRole} and entity tables ready`);
    } finally {
      await db.close();
    }
  });

  command(program, 'serve', 'run the HTTP server', false)
    .option('--port <n>', 'port to listen on (0: any free port)', port)
    .action(async (options: GlobalOptions & { port?: number }) => {
      const overrides = options.port === undefined ? {} : { port: options.port };
      const config = cli.config(options, overrides);
      // Loaded here: the other commands need neither Fastify nor the routes.
      const { startServer } = await import('../../server.js');
      // SIGHUP reads the same file again (like nginx, each process on its own signal). One that
      // comes while the server starts is applied once it listens.
      let server: Awaited<ReturnType<typeof startServer>> | undefined;
      let hangupWhileStarting = false;
      const reload = () => {
        if (server) void server.reload(() => cli.config(options, overrides));
        else hangupWhileStarting = true;
      };
      process.on('SIGHUP', reload);
      try {
        server = await startServer({ config, notice: (message) => cli.stderr.write(`${message}\n`) });
        cli.stderr.write(
          `tenantry listening on ${server.url} (${config.database.url ? 'PostgreSQL' : `embedded database in ${config.dataDir}`})\n`,
        );
        if (hangupWhileStarting) reload();
        await (cli.io.shutdownSignal ??
          new Promise((resolve) => {
            process.once('SIGTERM', resolve);
            process.once('SIGINT', resolve);
          }));
        await server.close();
      } finally {
        process.off('SIGHUP', reload);
      }
    });
}
