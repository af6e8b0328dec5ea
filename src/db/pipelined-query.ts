import pg from 'pg';
import { prepareValue } from 'pg/lib/utils.js';

/** pg's Query handlers and wire connection, as far as this module uses them (not in @types/pg). */
interface QueryInternals {
  handleDataRow(message: unknown): void;
  handleCommandComplete(message: unknown, connection: unknown): void;
}

interface WireConnection {
  parse(options: { text: string; name?: string; types?: number[] }): void;
  bind(options: {
    portal?: string;
    statement?: string;
    values: unknown[];
    valueMapper: (value: unknown) => unknown;
  }): void;
  describe(options: { type: 'P' | 'S'; name: string }): void;
  execute(options: { portal: string; rows?: number }): void;
  sync(): void;
  stream: { cork?: () => void; uncork?: () => void };
}

export interface Statement {
  readonly text: string;
  readonly values: readonly unknown[];
}

/**
 * Sends `setup` statements and then `main` in one pipeline ending in a single Sync: one round
 * trip, one implicit transaction. If any statement fails the server skips to the Sync and rolls
 * the whole pipeline back, so a setup that did not apply can never be followed by `main`.
 * Results of the setup statements are discarded; the result of `main` is returned.
 */
export function pipelinedQuery<R extends pg.QueryResultRow>(
  client: pg.ClientBase,
  setup: readonly Statement[],
  main: Statement,
): Promise<pg.QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const query = new pg.Query<R>(main.text, [...main.values]);
    const internals = query as unknown as QueryInternals;
    const handleDataRow = internals.handleDataRow.bind(query);
    const handleCommandComplete = internals.handleCommandComplete.bind(query);
    let setupPending = setup.length;
    // Setup statements are executed without Describe: their rows arrive without a row
    // description and end with a CommandComplete each; they must not reach the main result.
    internals.handleDataRow = (message) => {
      if (setupPending === 0) handleDataRow(message);
    };
    internals.handleCommandComplete = (message, connection) => {
      if (setupPending > 0) setupPending -= 1;
      else handleCommandComplete(message, connection);
    };
    query.submit = (connection) => {
      const wire = connection as unknown as WireConnection;
      wire.stream.cork?.();
      try {
        for (const statement of setup) {
          wire.parse({ text: statement.text });
          wire.bind({ values: [...statement.values], valueMapper: prepareValue });
          wire.execute({ portal: '' });
        }
        wire.parse({ text: main.text });
        wire.bind({ values: [...main.values], valueMapper: prepareValue });
        wire.describe({ type: 'P', name: '' });
        wire.execute({ portal: '' });
        wire.sync();
      } finally {
        wire.stream.uncork?.();
      }
    };
    query.on('end', (result) => resolve(result as unknown as pg.QueryResult<R>));
    query.on('error', reject);
    client.query(query);
  });
}
