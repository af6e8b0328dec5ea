import pg from 'pg';
import { prepareValue } from 'pg/lib/utils.js';

/** pg's Query as far as this module extends it (its handlers are not in @types/pg). */
interface QueryBase {
  values: unknown[] | undefined;
  callback: QueryCallback | undefined;
  handleRowDescription(message: RowDescription): void;
  handleDataRow(message: unknown): void;
  handleCommandComplete(message: unknown, connection: unknown): void;
}

type QueryCallback = (error: Error | null, result?: pg.QueryResult) => void;

const QueryBase = pg.Query as unknown as new (text: string) => QueryBase;

/** A RowDescription message as pg-protocol parses it: what pg needs to read the rows. */
interface RowDescription {
  readonly fields: readonly unknown[];
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
  /**
   * The row description of a named statement, seen the first time it ran: a reused statement's
   * columns cannot change without the server refusing it as stale, so it is not described again.
   */
  readonly descriptions = new Map<string, RowDescription>();
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
    this.descriptions.delete(name);
    for (const oldest of this.states.keys()) {
      if (this.states.size <= capacity) break;
      this.states.delete(oldest);
      this.descriptions.delete(oldest);
      this.evicted.push(oldest);
    }
  }

  /** After a failure that may have left `name` stale or gone: parsed and described again next time. */
  distrust(name: string): void {
    this.states.set(name, 'unsure');
    this.descriptions.delete(name);
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
    for (const name of reused) statements?.distrust(name);
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
    const query = new PipelinedQuery(setup, main, capacity, reused, (error, result) =>
      error ? reject(error) : resolve(result as pg.QueryResult<R>),
    );
    client.query(query as unknown as pg.Submittable);
  });
}

/**
 * pg's Query, sending the pipeline itself and keeping the setup statements' results out of the
 * main one. A subclass rather than per-request closures: this runs on every tenant request.
 */
class PipelinedQuery extends QueryBase {
  #setupPending: number;
  #statements: ConnectionStatements | undefined;
  /** The main statement is named and its description known: no Describe was sent for it. */
  #describedFromCache = false;

  constructor(
    private readonly setup: readonly Statement[],
    private readonly main: Statement,
    private readonly capacity: number,
    private readonly reused: string[],
    callback: QueryCallback,
  ) {
    // Text alone: pg copies a config object property by property (descriptors and all), which
    // cost more than the rest of this constructor. pg reads the values and never writes them
    // (submit below replaces its prepare).
    super(main.text);
    this.values = main.values as unknown[];
    this.callback = callback;
    this.#setupPending = setup.length;
  }

  override handleRowDescription(message: RowDescription): void {
    const name = this.main.name;
    if (name !== undefined && !this.#describedFromCache) this.#statements?.descriptions.set(name, message);
    super.handleRowDescription(message);
  }

  // Setup statements are executed without Describe: their rows arrive without a row
  // description and end with a CommandComplete each; they must not reach the main result.
  override handleDataRow(message: unknown): void {
    if (this.#setupPending === 0) super.handleDataRow(message);
  }

  override handleCommandComplete(message: unknown, connection: unknown): void {
    const statement = this.#setupPending > 0 ? this.setup[this.setup.length - this.#setupPending] : this.main;
    if (statement?.name !== undefined) this.#statements?.states.set(statement.name, 'parsed');
    if (this.#setupPending > 0) this.#setupPending -= 1;
    else super.handleCommandComplete(message, connection);
  }

  submit(connection: unknown): void {
    const wire = connection as WireConnection;
    const { setup, main, capacity, reused } = this;
    let statements: ConnectionStatements | undefined;
    wire.stream.cork?.();
    try {
      if (main.name !== undefined || setup.some((statement) => statement.name !== undefined)) {
        statements = statementsOn(connection as object);
        this.#statements = statements;
        for (const name of statements.evicted) wire.close({ type: 'S', name });
        statements.evicted = [];
      }
      for (const statement of setup) {
        sendStatement(wire, statement, statements, capacity, reused);
        wire.execute({ portal: '' });
      }
      const mainState = sendStatement(wire, main, statements, capacity, reused);
      const description = mainState === 'parsed' ? statements?.descriptions.get(main.name!) : undefined;
      if (description) {
        this.#describedFromCache = true;
        this.handleRowDescription(description);
      } else {
        wire.describe({ type: 'P', name: '' });
      }
      wire.execute({ portal: '' });
      wire.sync();
    } finally {
      wire.stream.uncork?.();
    }
  }
}

/** Parse (unless the connection holds the named statement already) and Bind to the unnamed portal. */
function sendStatement(
  wire: WireConnection,
  statement: Statement,
  statements: ConnectionStatements | undefined,
  capacity: number,
  reused: string[],
): 'parsed' | 'new' {
  const name = statement.name;
  let state: 'parsed' | 'new' = 'new';
  if (name === undefined || !statements) {
    wire.parse({ text: statement.text });
  } else {
    const known = statements.use(name);
    if (known === 'parsed') {
      reused.push(name);
      state = 'parsed';
    } else {
      if (known === 'unsure') wire.close({ type: 'S', name });
      wire.parse({ text: statement.text, name });
      // Until its CommandComplete is seen, a failure leaves it unsure.
      statements.parsing(name, capacity);
    }
  }
  wire.bind({ statement: name ?? '', values: statement.values as unknown[], valueMapper: prepareValue });
  return state;
}
