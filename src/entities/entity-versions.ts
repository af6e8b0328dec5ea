import { createHash } from 'node:crypto';
import type { Queryable } from '../db/database.js';
import { type Entity, FIELD_TYPES, type Field } from './entity.js';
import { EntityRepository } from './entity-repository.js';

/** One registered declaration of the entities: what a tenant's tables at that version look like. */
export interface EntityVersion {
  readonly version: number;
  readonly digest: string;
  readonly entities: readonly Entity[];
}

/** What storage depends on: everything but `feature`, which changes no table. */
function storageShape(entities: readonly Entity[]): Entity[] {
  return entities.map((entity) => ({ ...entity, feature: undefined }));
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => [k, canonical(v)]),
    );
  }
  return value;
}

/**
 * The digest of a declaration's storage shape: the same tables give the same digest, whatever
 * the order entities and fields are declared in.
 */
export function entitiesDigest(entities: readonly Entity[]): string {
  const sorted = storageShape(entities)
    .map((entity) => ({ ...entity, fields: [...entity.fields].sort((a, b) => (a.name < b.name ? -1 : 1)) }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  return createHash('sha256')
    .update(JSON.stringify(canonical(sorted)))
    .digest('hex')
    .slice(0, 32);
}

/** Entities as stored in the version ledger (JSON; undefined options are left out). */
export function serialiseEntities(entities: readonly Entity[]): string {
  return JSON.stringify(canonical(storageShape(entities)));
}

export function parseEntities(value: unknown): Entity[] {
  const list = (typeof value === 'string' ? JSON.parse(value) : value) as Partial<Entity>[];
  return list.map((entity) => ({
    name: entity.name as string,
    scope: entity.scope ?? 'tenant',
    feature: undefined,
    fields: (entity.fields ?? []).map(
      (field: Partial<Field>): Field => ({
        name: field.name as string,
        type: field.type as Field['type'],
        required: field.required ?? false,
        unique: field.unique ?? false,
        index: field.index ?? false,
        search: field.search ?? false,
        default: field.default,
        maxLength: field.maxLength,
        min: field.min,
        max: field.max,
        values: field.values,
        ref: field.ref,
      }),
    ),
  }));
}

export async function loadVersions(db: Queryable): Promise<EntityVersion[]> {
  const { rows } = await db.query<{ version: number; digest: string; entities: unknown }>(
    'SELECT version, digest, entities FROM tenantry.entity_versions ORDER BY version',
  );
  return rows.map((row) => ({
    version: Number(row.version),
    digest: row.digest,
    entities: parseEntities(row.entities),
  }));
}

/**
 * The entities of the code as they can be used on tables built at an older version: entities
 * the tables lack are absent, and fields the tables lack (or hold with another type) are left
 * out. Old and new code both work during a rollout: add first, remove later.
 */
export class EntityView {
  readonly #repositories = new Map<string, EntityRepository>();
  readonly #missingFields = new Map<string, readonly string[]>();

  constructor(
    readonly version: number,
    code: readonly Entity[],
    tables: readonly Entity[] | undefined,
  ) {
    const stored = new Map((tables ?? code).map((entity) => [entity.name, entity]));
    for (const entity of code) {
      const built = stored.get(entity.name);
      if (!built || built.scope !== entity.scope) continue;
      if (built === entity) {
        this.#repositories.set(entity.name, new EntityRepository(entity));
        continue;
      }
      const builtFields = new Map(built.fields.map((field) => [field.name, field]));
      const usable: Field[] = [];
      const missing: string[] = [];
      for (const field of entity.fields) {
        const old = builtFields.get(field.name);
        if (old && FIELD_TYPES[old.type] === FIELD_TYPES[field.type])
          usable.push({ ...field, search: old.search });
        else missing.push(field.name);
      }
      this.#repositories.set(entity.name, new EntityRepository({ ...entity, fields: usable }));
      this.#missingFields.set(entity.name, missing);
    }
  }

  /** The repository of an entity on these tables, or undefined when they lack the entity. */
  repository(entity: string): EntityRepository | undefined {
    return this.#repositories.get(entity);
  }

  /** Declared fields these tables do not have yet. */
  missingFields(entity: string): readonly string[] {
    return this.#missingFields.get(entity) ?? [];
  }
}

/**
 * The entity-schema versions this process knows, and how its own declaration relates to them.
 * A version is registered when a declaration is first applied (a migration or a new tenant);
 * tenants and the shared tables record the version their tables were built at.
 */
export class EntityVersions {
  readonly code: readonly Entity[];
  readonly digest: string;
  readonly #versions = new Map<number, EntityVersion>();
  readonly #views = new Map<number, EntityView>();
  /** The code's own version, once registered. */
  #codeVersion: number | undefined;
  /** Versions up to this one were registered before this process loaded them: older than an unregistered code. */
  #olderThanCode = 0;

  constructor(code: readonly Entity[]) {
    this.code = code;
    this.digest = entitiesDigest(code);
  }

  get codeVersion(): number | undefined {
    return this.#codeVersion;
  }

  get latest(): number {
    return Math.max(0, ...this.#versions.keys());
  }

  add(versions: readonly EntityVersion[], options: { initial?: boolean } = {}): void {
    for (const version of versions) {
      this.#versions.set(version.version, version);
      if (version.digest === this.digest && (this.#codeVersion ?? 0) < version.version)
        this.#codeVersion = version.version;
    }
    if (options.initial) this.#olderThanCode = this.latest;
  }

  known(version: number): EntityVersion | undefined {
    return this.#versions.get(version);
  }

  /**
   * Whether tables at `version` were built by a newer declaration than this code's: such a
   * tenant must not be served by this process. Undefined when the version is not loaded yet.
   */
  isNewer(version: number): boolean | undefined {
    if (this.#codeVersion !== undefined) {
      if (version <= this.#codeVersion) return false;
      return this.#versions.has(version) ? true : undefined;
    }
    if (version <= this.#olderThanCode) return false;
    const record = this.#versions.get(version);
    return record === undefined ? undefined : record.digest !== this.digest;
  }

  /** The view of the code's entities on tables at `version` (loaded versions only). */
  view(version: number): EntityView | undefined {
    let view = this.#views.get(version);
    if (view) return view;
    const record = this.#versions.get(version);
    if (!record) return undefined;
    const same = record.digest === this.digest;
    view = new EntityView(version, this.code, same ? undefined : record.entities);
    this.#views.set(version, view);
    return view;
  }
}
