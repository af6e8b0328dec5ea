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
  close(options: { type: 'S' | 'P'; name: string }): void;
  sync(): void;
  stream: { cork?: () => void; uncork?: () => void };
}

export interface Statement {
  readonly text: string;
  readonly values: readonly unknown[];
  /**
   * A setup statement with a name is parsed once per connection and bound by name afterwards:
   * the server plans it once instead of on every request.
   */
  readonly name?: string;
}

/**
 * Named statements each connection holds: `parsed` once the server has run one (so it exists),
 * `unsure` after a pipeline failed before we could tell (it may or may not exist: the next use
 * closes it first, which the server allows for a statement that does not exist).
 */
const preparedByConnection = new WeakMap<object, Map<string, 'parsed' | 'unsure'>>();

function preparedOn(connection: object): Map<string, 'parsed' | 'unsure'> {
  let prepared = preparedByConnection.get(connection);
  if (!prepared) {
    prepared = new Map();
    preparedByConnection.set(connection, prepared);
  }
  return prepared;
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
    let prepared: Map<string, 'parsed' | 'unsure'> | undefined;
    // Setup statements are executed without Describe: their rows arrive without a row
    // description and end with a CommandComplete each; they must not reach the main result.
    internals.handleDataRow = (message) => {
      if (setupPending === 0) handleDataRow(message);
    };
    internals.handleCommandComplete = (message, connection) => {
      if (setupPending > 0) {
        const statement = setup[setup.length - setupPending];
        if (statement?.name !== undefined) prepared?.set(statement.name, 'parsed');
        setupPending -= 1;
      } else handleCommandComplete(message, connection);
    };
    query.submit = (connection) => {
      const wire = connection as unknown as WireConnection;
      wire.stream.cork?.();
      try {
        for (const statement of setup) {
          const name = statement.name;
          if (name === undefined) {
            wire.parse({ text: statement.text });
          } else {
            prepared ??= preparedOn(connection);
            const state = prepared.get(name);
            if (state !== 'parsed') {
              if (state === 'unsure') wire.close({ type: 'S', name });
              wire.parse({ text: statement.text, name });
              // Until its CommandComplete is seen, a failure leaves it unsure.
              prepared.set(name, 'unsure');
            }
          }
          wire.bind({ statement: name ?? '', values: [...statement.values], valueMapper: prepareValue });
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
