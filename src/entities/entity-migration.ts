import { qualified, quoteIdent } from '../db/identifiers.js';
import type { Entity } from './entity.js';
import {
  addConstraintSql,
  type ColumnModel,
  columnDefinition,
  createIndexSql,
  createTableSql,
  type NamedDefinition,
  SEARCH_COLUMN,
  type TableModel,
  tableModel,
} from './entity-ddl.js';

/** Where a plan is applied: the schema that holds the tables, and the runtime role to grant. */
export interface MigrationTarget {
  readonly schema: string;
  readonly runtimeRole: string;
}

/** A change that loses data: refused unless the operator allows destructive changes. */
export interface DestructiveChange {
  readonly entity: string;
  readonly field: string | undefined;
  readonly change: string;
}

/** A change that cannot be made at all from this declaration; the config must change. */
export interface MigrationProblem {
  readonly entity: string;
  readonly field: string | undefined;
  readonly message: string;
}

/** One statement of a plan, rendered for a target. */
type Step = (target: MigrationTarget) => string;

/**
 * The difference between two declarations of one scope's entities, as ordered statements.
 * Plans are pure: the same plan is rendered for every tenant at the same version, so the fleet
 * never introspects a tenant that is current, and `--plan` prints exactly what would run.
 */
export interface MigrationPlan {
  readonly scope: 'tenant' | 'shared';
  readonly destructive: readonly DestructiveChange[];
  readonly problems: readonly MigrationProblem[];
  /** Human summary of each change, in order. */
  readonly changes: readonly string[];
  readonly empty: boolean;
  statements(target: MigrationTarget): string[];
}

interface Phases {
  dropForeignKeys: Step[];
  dropConstraints: Step[];
  dropSearch: Step[];
  dropTables: Step[];
  dropColumns: Step[];
  createTables: Step[];
  alterColumns: Step[];
  addColumns: Step[];
  addSearch: Step[];
  addConstraints: Step[];
  addForeignKeys: Step[];
}

const byName = <T extends { name: string }>(items: readonly T[]) =>
  new Map(items.map((item) => [item.name, item]));

/**
 * Plans the change from `from` (what a tenant's tables were built from) to `to` (what the code
 * declares), for the entities of one scope. Additive changes are always allowed; dropping an
 * entity or field and changing a field's type are listed as destructive.
 */
export function planMigration(
  from: readonly Entity[],
  to: readonly Entity[],
  scope: 'tenant' | 'shared',
): MigrationPlan {
  const phases: Phases = {
    dropForeignKeys: [],
    dropConstraints: [],
    dropSearch: [],
    dropTables: [],
    dropColumns: [],
    createTables: [],
    alterColumns: [],
    addColumns: [],
    addSearch: [],
    addConstraints: [],
    addForeignKeys: [],
  };
  const destructive: DestructiveChange[] = [];
  const problems: MigrationProblem[] = [];
  const changes: string[] = [];
  const before = byName(from);
  const after = byName(to);

  for (const entity of from.filter((e) => e.scope === scope)) {
    const next = after.get(entity.name);
    if (next && next.scope !== entity.scope) {
      problems.push({
        entity: entity.name,
        field: undefined,
        message: `entity "${entity.name}" cannot change scope from ${entity.scope} to ${next.scope}; declare a new entity instead`,
      });
      continue;
    }
    if (next) continue;
    const model = tableModel(entity);
    for (const fk of model.foreignKeys) phases.dropForeignKeys.push(dropConstraint(entity.name, fk));
    phases.dropTables.push((t) => `DROP TABLE ${qualified(t.schema, entity.name)}`);
    destructive.push({
      entity: entity.name,
      field: undefined,
      change: `drop entity "${entity.name}" and its rows`,
    });
    changes.push(`drop entity ${entity.name}`);
  }

  for (const entity of to.filter((e) => e.scope === scope)) {
    const previous = before.get(entity.name);
    if (previous && previous.scope !== entity.scope) continue;
    const model = tableModel(entity);
    if (!previous) {
      phases.createTables.push(...createTableSteps(model));
      for (const fk of model.foreignKeys) phases.addForeignKeys.push(addConstraint(entity.name, fk));
      changes.push(`create entity ${entity.name}`);
      continue;
    }
    diffTable(tableModel(previous), model, { phases, destructive, problems, changes });
  }

  const ordered = [
    ...phases.dropForeignKeys,
    ...phases.dropConstraints,
    ...phases.dropSearch,
    ...phases.dropTables,
    ...phases.dropColumns,
    ...phases.createTables,
    ...phases.alterColumns,
    ...phases.addColumns,
    ...phases.addSearch,
    ...phases.addConstraints,
    ...phases.addForeignKeys,
  ];
  return {
    scope,
    destructive,
    problems,
    changes,
    empty: ordered.length === 0,
    statements: (target) => ordered.map((step) => step(target)),
  };
}

/** One step per statement: each runs as one extended-protocol command. */
function createTableSteps(model: TableModel): Step[] {
  const count = createTableSql(model, { schema: 'x', runtimeRole: 'x' }).length;
  return Array.from(
    { length: count },
    (_, index) => (t: MigrationTarget) => createTableSql(model, t)[index]!,
  );
}

function dropConstraint(table: string, constraint: NamedDefinition): Step {
  return (t) => `ALTER TABLE ${qualified(t.schema, table)} DROP CONSTRAINT ${quoteIdent(constraint.name)}`;
}

function addConstraint(table: string, constraint: NamedDefinition): Step {
  return (t) => addConstraintSql(qualified(t.schema, table), constraint, t.schema);
}

interface DiffContext {
  readonly phases: Phases;
  readonly destructive: DestructiveChange[];
  readonly problems: MigrationProblem[];
  readonly changes: string[];
}

function diffTable(old: TableModel, next: TableModel, context: DiffContext): void {
  const { phases, destructive, problems, changes } = context;
  const name = next.entity.name;
  const table = (t: MigrationTarget) => qualified(t.schema, name);
  const oldColumns = byName(old.columns.filter((c) => c.name !== SEARCH_COLUMN));
  const newColumns = byName(next.columns.filter((c) => c.name !== SEARCH_COLUMN));
  const retyped = new Set<string>();

  for (const column of oldColumns.values()) {
    if (newColumns.has(column.name)) continue;
    phases.dropColumns.push((t) => `ALTER TABLE ${table(t)} DROP COLUMN ${quoteIdent(column.name)}`);
    destructive.push({
      entity: name,
      field: column.name,
      change: `drop field "${name}.${column.name}" and its values`,
    });
    changes.push(`drop field ${name}.${column.name}`);
  }
  for (const column of newColumns.values()) {
    const previous = oldColumns.get(column.name);
    if (!previous) {
      if (column.notNull && column.default === undefined) {
        problems.push({
          entity: name,
          field: column.name,
          message: `field "${name}.${column.name}" is added as required without a default: existing rows would have no value; give it a default or make it optional first`,
        });
        continue;
      }
      phases.addColumns.push((t) => `ALTER TABLE ${table(t)} ADD COLUMN ${columnDefinition(column)}`);
      changes.push(`add field ${name}.${column.name}`);
      continue;
    }
    alterColumn(previous, column, next.entity, table, context, retyped);
  }

  // The search column is generated: a different document means dropping and adding it again
  // (PostgreSQL 15 cannot change a generation expression), which also drops its index.
  const oldSearch = old.columns.find((c) => c.name === SEARCH_COLUMN);
  const newSearch = next.columns.find((c) => c.name === SEARCH_COLUMN);
  const searchFields = next.entity.fields.filter((f) => f.search).map((f) => f.name);
  const searchRebuilt =
    oldSearch !== undefined &&
    (newSearch?.generated !== oldSearch.generated || searchFields.some((f) => retyped.has(f)));
  if (searchRebuilt || (oldSearch && !newSearch)) {
    phases.dropSearch.push((t) => `ALTER TABLE ${table(t)} DROP COLUMN ${quoteIdent(SEARCH_COLUMN)}`);
  }
  if (newSearch && (searchRebuilt || !oldSearch)) {
    phases.addSearch.push((t) => `ALTER TABLE ${table(t)} ADD COLUMN ${columnDefinition(newSearch)}`);
    changes.push(`${oldSearch ? 'rebuild' : 'add'} full-text search of ${name} (${searchFields.join(', ')})`);
  } else if (oldSearch && !newSearch) {
    changes.push(`remove full-text search of ${name}`);
  }

  const rebuilt = (item: NamedDefinition) =>
    (item.field !== undefined && retyped.has(item.field)) || (item.field === SEARCH_COLUMN && searchRebuilt);
  diffNamed(old.constraints, next.constraints, rebuilt, {
    drop: (item) => phases.dropConstraints.push(dropConstraint(name, item)),
    add: (item) => phases.addConstraints.push(addConstraint(name, item)),
    describe: (verb, item) => changes.push(`${verb} constraint ${item.name}`),
  });
  diffNamed(old.indexes, next.indexes, rebuilt, {
    // The search index went with its column when the column was dropped.
    drop: (item) =>
      phases.dropConstraints.push(
        (t) =>
          `DROP INDEX ${item.field === SEARCH_COLUMN ? 'IF EXISTS ' : ''}${qualified(t.schema, item.name)}`,
      ),
    add: (item) => phases.addConstraints.push((t) => createIndexSql(table(t), item)),
    describe: (verb, item) => changes.push(`${verb} index ${item.name}`),
    forceAdd: (item) => item.field === SEARCH_COLUMN && searchRebuilt,
  });
  diffNamed(old.foreignKeys, next.foreignKeys, rebuilt, {
    drop: (item) => phases.dropForeignKeys.push(dropConstraint(name, item)),
    add: (item) => phases.addForeignKeys.push(addConstraint(name, item)),
    describe: (verb, item) => changes.push(`${verb} reference ${item.name}`),
  });
}

function alterColumn(
  previous: ColumnModel,
  column: ColumnModel,
  owner: Entity,
  table: (t: MigrationTarget) => string,
  context: DiffContext,
  retyped: Set<string>,
): void {
  const { phases, destructive, changes } = context;
  const entity = owner.name;
  const ident = quoteIdent(column.name);
  const alter = (t: MigrationTarget, action: string) =>
    `ALTER TABLE ${table(t)} ALTER COLUMN ${ident} ${action}`;
  if (previous.type !== column.type) {
    retyped.add(column.name);
    destructive.push({
      entity,
      field: column.name,
      change: `change the type of "${entity}.${column.name}" from ${previous.type} to ${column.type} (values that do not convert fail the tenant's migration)`,
    });
    changes.push(`retype field ${entity}.${column.name} ${previous.type} -> ${column.type}`);
    if (previous.default !== undefined) phases.alterColumns.push((t) => alter(t, 'DROP DEFAULT'));
    phases.alterColumns.push((t) => alter(t, `TYPE ${column.type} USING ${ident}::${column.type}`));
    if (column.default !== undefined)
      phases.alterColumns.push((t) => alter(t, `SET DEFAULT ${column.default}`));
  } else if (previous.default !== column.default) {
    phases.alterColumns.push((t) =>
      alter(t, column.default === undefined ? 'DROP DEFAULT' : `SET DEFAULT ${column.default}`),
    );
    changes.push(`change the default of ${entity}.${column.name}`);
  }
  if (previous.notNull !== column.notNull) {
    if (column.notNull && column.default !== undefined) {
      // Existing rows without a value take the default. A tenant table's own policies would hide
      // every row from this unscoped UPDATE, so row security is lifted inside the migration's
      // transaction only (ALTER TABLE holds an exclusive lock until it commits). Shared tables
      // have no row security to lift.
      const tenantTable = owner.scope === 'tenant';
      if (tenantTable) phases.alterColumns.push((t) => `ALTER TABLE ${table(t)} NO FORCE ROW LEVEL SECURITY`);
      phases.alterColumns.push(
        (t) => `UPDATE ${table(t)} SET ${ident} = ${column.default} WHERE ${ident} IS NULL`,
      );
      if (tenantTable) phases.alterColumns.push((t) => `ALTER TABLE ${table(t)} FORCE ROW LEVEL SECURITY`);
    }
    phases.alterColumns.push((t) => alter(t, column.notNull ? 'SET NOT NULL' : 'DROP NOT NULL'));
    changes.push(`make ${entity}.${column.name} ${column.notNull ? 'required' : 'optional'}`);
  }
}

function diffNamed(
  old: readonly NamedDefinition[],
  next: readonly NamedDefinition[],
  rebuilt: (item: NamedDefinition) => boolean,
  actions: {
    drop: (item: NamedDefinition) => void;
    add: (item: NamedDefinition) => void;
    describe: (verb: string, item: NamedDefinition) => void;
    forceAdd?: (item: NamedDefinition) => boolean;
  },
): void {
  const oldByName = byName(old);
  const newByName = byName(next);
  for (const item of old) {
    const replacement = newByName.get(item.name);
    if (!replacement || replacement.definition !== item.definition || rebuilt(item)) {
      actions.drop(item);
      if (!replacement) actions.describe('drop', item);
    }
  }
  for (const item of next) {
    const previous = oldByName.get(item.name);
    const changed = previous !== undefined && (previous.definition !== item.definition || rebuilt(previous));
    if (!previous || changed || actions.forceAdd?.(item)) {
      actions.add(item);
      actions.describe(previous ? 'rebuild' : 'add', item);
    }
  }
}

/** The tenant and shared plans between two declarations. */
export interface EntityChange {
  readonly tenant: MigrationPlan;
  readonly shared: MigrationPlan;
}

export function planEntityChange(from: readonly Entity[], to: readonly Entity[]): EntityChange {
  return { tenant: planMigration(from, to, 'tenant'), shared: planMigration(from, to, 'shared') };
}
