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
   * A statement with a name is parsed once per connection and bound by name afterwards: the
   * server parses and plans it once instead of on every request (see `preparedName`).
   */
  readonly name?: string;
}

/** Named statements a connection keeps by default before closing the least recently used. */
const DEFAULT_CAPACITY = 256;

/**
 * Named statements one connection holds, least recently used first: `parsed` once the server
 * has run one (so it exists), `unsure` after a pipeline failed before we could tell (it may or
 * may not exist: the next use closes it first, which the server allows for a statement that
 * does not exist). Names pushed out of the map are closed at the start of the next pipeline.
 */
class ConnectionStatements {
  readonly states = new Map<string, 'parsed' | 'unsure'>();
  evicted: string[] = [];

  /** The state of `name`, which becomes the most recently used. */
  use(name: string): 'parsed' | 'unsure' | undefined {
    const state = this.states.get(name);
    if (state !== undefined) {
      this.states.delete(name);
      this.states.set(name, state);
    }
    return state;
  }

  /** Records a statement about to be parsed, pushing out the least recently used beyond `capacity`. */
  parsing(name: string, capacity: number): void {
    this.states.set(name, 'unsure');
    for (const oldest of this.states.keys()) {
      if (this.states.size <= capacity) break;
      this.states.delete(oldest);
      this.evicted.push(oldest);
    }
  }
}

const statementsByConnection = new WeakMap<object, ConnectionStatements>();

function statementsOn(connection: object): ConnectionStatements {
  let statements = statementsByConnection.get(connection);
  if (!statements) {
    statements = new ConnectionStatements();
    statementsByConnection.set(connection, statements);
  }
  return statements;
}

const namesByText = new Map<string, string>();
const MAX_REMEMBERED_NAMES = 10_000;
let nameCounter = 0;

/**
 * The statement name for `text` in this process. Names are never reused for another text: when
 * the map is full it starts over with new numbers, and connections close the old names as they
 * fall out of use.
 */
export function preparedName(text: string): string {
  let name = namesByText.get(text);
  if (name === undefined) {
    if (namesByText.size >= MAX_REMEMBERED_NAMES) namesByText.clear();
    nameCounter += 1;
    name = `tenantry_${nameCounter.toString(36)}`;
    namesByText.set(text, name);
  }
  return name;
}

/**
 * Refusals of a reused prepared statement that a fresh parse cures: its result columns changed
 * since it was planned (a table altered under it: "cached plan must not change result type"),
 * or it no longer exists (`DEALLOCATE` run on the connection by other code).
 */
const STALE_STATEMENT = new Set(['0A000', '26000']);

/**
 * Sends `setup` statements and then `main` in one pipeline ending in a single Sync: one round
 * trip, one implicit transaction. If any statement fails the server skips to the Sync and rolls
 * the whole pipeline back, so a setup that did not apply can never be followed by `main`.
 * Results of the setup statements are discarded; the result of `main` is returned.
 *
 * Named statements are kept per connection, at most `capacity` of them. When the server refuses
 * a reused one as stale, it is parsed again and the pipeline sent once more: nothing of the
 * refused pipeline was applied.
 */
export async function pipelinedQuery<R extends pg.QueryResultRow>(
  client: pg.ClientBase,
  setup: readonly Statement[],
  main: Statement,
  capacity = DEFAULT_CAPACITY,
): Promise<pg.QueryResult<R>> {
  const reused: string[] = [];
  try {
    return await sendPipeline<R>(client, setup, main, capacity, reused);
  } catch (error) {
    if (!STALE_STATEMENT.has((error as { code?: string }).code ?? '') || reused.length === 0) throw error;
    const statements = statementsByConnection.get((client as unknown as { connection: object }).connection);
    for (const name of reused) statements?.states.set(name, 'unsure');
    return sendPipeline<R>(client, setup, main, capacity, []);
  }
}

function sendPipeline<R extends pg.QueryResultRow>(
  client: pg.ClientBase,
  setup: readonly Statement[],
  main: Statement,
  capacity: number,
  reused: string[],
): Promise<pg.QueryResult<R>> {
  return new Promise((resolve, reject) => {
    // pg reads the values and never writes them (the custom submit below replaces its prepare).
    const query = new pg.Query<R>(main.text, main.values as unknown[]);
    const internals = query as unknown as QueryInternals;
    const handleDataRow = internals.handleDataRow.bind(query);
    const handleCommandComplete = internals.handleCommandComplete.bind(query);
    let setupPending = setup.length;
    let statements: ConnectionStatements | undefined;
    // Setup statements are executed without Describe: their rows arrive without a row
    // description and end with a CommandComplete each; they must not reach the main result.
    internals.handleDataRow = (message) => {
      if (setupPending === 0) handleDataRow(message);
    };
    internals.handleCommandComplete = (message, connection) => {
      const statement = setupPending > 0 ? setup[setup.length - setupPending] : main;
      if (statement?.name !== undefined) statements?.states.set(statement.name, 'parsed');
      if (setupPending > 0) setupPending -= 1;
      else handleCommandComplete(message, connection);
    };
    query.submit = (connection) => {
      const wire = connection as unknown as WireConnection;
      wire.stream.cork?.();
      try {
        if (setup.some((statement) => statement.name !== undefined) || main.name !== undefined) {
          statements = statementsOn(connection);
          for (const name of statements.evicted) wire.close({ type: 'S', name });
          statements.evicted = [];
        }
        for (const statement of setup) {
          sendStatement(wire, statement, statements, capacity, reused);
          wire.execute({ portal: '' });
        }
        sendStatement(wire, main, statements, capacity, reused);
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

/** Parse (unless the connection holds the named statement already) and Bind to the unnamed portal. */
function sendStatement(
  wire: WireConnection,
  statement: Statement,
  statements: ConnectionStatements | undefined,
  capacity: number,
  reused: string[],
): void {
  const name = statement.name;
  if (name === undefined || !statements) {
    wire.parse({ text: statement.text });
  } else {
    const state = statements.use(name);
    if (state === 'parsed') reused.push(name);
    else {
      if (state === 'unsure') wire.close({ type: 'S', name });
      wire.parse({ text: statement.text, name });
      // Until its CommandComplete is seen, a failure leaves it unsure.
      statements.parsing(name, capacity);
    }
  }
  wire.bind({ statement: name ?? '', values: statement.values as unknown[], valueMapper: prepareValue });
}
