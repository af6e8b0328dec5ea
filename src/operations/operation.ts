import type { Static, TObject, TSchema } from 'typebox';
import type { Principal } from '../auth/delegation.js';
import type { Engine } from '../engine/engine.js';
import type { ActionContext } from '../runtime/actor.js';
import type { Tenant } from '../tenants/tenant.js';

/**
 * Who may run an operation. Operators (the admin token, a global admin's session, the CLI, the
 * library) act on any tenant they name; a tenant actor (an API key or a user's session) only in
 * its own tenant, and only while it holds `tenant`, the permission named here.
 */
export interface Access {
  readonly operator: boolean;
  /** The permission a tenant actor needs; absent: tenant actors may not run it. */
  readonly tenant?: string;
}

/**
 * How an operation is reached over HTTP. Input members come from the path parameters (renamed
 * by `params`: URL name to input member), from the query string (`query`: input members, written
 * as text and converted to their schema's type), and the rest from the JSON body.
 */
export interface HttpRoute {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Fastify's path syntax: `/admin/tenants/:idOrSlug`. */
  readonly path: string;
  /** `admin` routes take the admin token or a global admin's session; `tenant` routes resolve a tenant first. */
  readonly scope: 'admin' | 'tenant';
  readonly params?: Readonly<Record<string, string>>;
  readonly query?: readonly string[];
  /** Default 200; 201 for a creation, 202 for a job started, 204 sends no body. */
  readonly status?: 200 | 201 | 202 | 204;
  /** A creation's `Location` header, from its output. */
  readonly location?: (output: never) => string;
  /** A summary when the route differs from the operation's own. */
  readonly summary?: string;
  /**
   * Answers with a file instead of JSON: the output names it (a job's backup or export). The
   * library and the CLI get the output itself.
   */
  readonly download?: (output: never) => {
    readonly file: string;
    readonly name: string;
    readonly type: string;
  };
  /** What is answered: the output by default, or a part of it (`/api/v1/keys` lists keys as `items`). */
  readonly respond?: { readonly schema: TSchema; readonly from: (output: never) => unknown };
}

/** How far a long operation is (a backup's rows, a restore's rows): front ends draw it. */
export interface OperationProgress {
  readonly done: number;
  /** Undefined while unknown. */
  readonly total?: number;
  /** What is counted: `rows`, `tenants`. */
  readonly unit: string;
}

/** What an operation runs with: the engine, who asks, and the tenant it acts in. */
export interface OperationCall {
  readonly engine: Engine;
  /** The caller, for the audit trail. */
  readonly context: ActionContext;
  /**
   * The tenant the call acts in: a tenant actor's own, or the one an operator names (by id or
   * slug; `tenant_not_found` when there is none, `validation_failed` when none is named).
   */
  tenant(named: string | undefined, options?: { includeDeleted?: boolean }): Promise<Tenant>;
  /** The caller as a principal of `tenant`: a tenant actor with what it holds, an operator with everything. */
  principal(tenant: Tenant): Principal;
  /** Whether the caller is an operator (not a tenant actor). */
  readonly operator: boolean;
  /** Reports progress to whoever follows the call (a terminal's bar, a job); may go nowhere. */
  readonly progress: (progress: OperationProgress) => void;
}

/**
 * One engine action, defined once: its name, who may run it, its input and output (TypeBox
 * schemas, so the types come from them), the audit actions it writes, how HTTP reaches it, and
 * what it does. HTTP routes, CLI commands, the control socket and the library's typed calls all
 * come from this definition.
 */
/** `noun.verb`: the library call `tenantry.<noun>.<verb>`, the control socket's name. */
export type OperationName = `${string}.${string}`;

export interface Operation<
  I extends TObject = TObject,
  O extends TSchema = TSchema,
  N extends string = OperationName,
> {
  /** `noun.verb`: the library call `tenantry.<noun>.<verb>`, the control socket's name. */
  readonly name: N;
  readonly summary: string;
  readonly access: Access;
  readonly input: I;
  readonly output: O;
  /** Audit actions it records (for the docs and the reader; the writes record them). */
  readonly audit?: readonly string[];
  readonly http?: readonly HttpRoute[];
  run(input: Static<I>, call: OperationCall): Promise<Static<O>>;
}

export type InputOf<O extends Operation> = Static<O['input']>;
export type OutputOf<O extends Operation> = Static<O['output']>;

/**
 * Defines an operation; its input and output types follow from its schemas.
 *
 * @example
 * export const deactivateTenant = defineOperation({
 *   name: 'tenants.deactivate',
 *   summary: 'Deactivate a tenant: it stops resolving at once',
 *   access: { operator: true },
 *   input: Type.Object({ tenant: TenantRef }),
 *   output: TenantViewSchema,
 *   audit: ['tenant.deactivate'],
 *   http: [{ method: 'POST', path: '/admin/tenants/:idOrSlug/deactivate', scope: 'admin', params: { idOrSlug: 'tenant' } }],
 *   run: async ({ tenant }, call) => tenantView(await setTenantStatus(call.engine.lifecycle, tenant, 'inactive', call.context)),
 * });
 */
export function defineOperation<I extends TObject, O extends TSchema, const N extends OperationName>(
  operation: Operation<I, O, N>,
): Operation<I, O, N> {
  return Object.freeze(operation);
}
