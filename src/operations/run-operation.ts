import type { Principal } from '../auth/delegation.js';
import type { Engine } from '../engine/engine.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { countQuotaRefusal } from '../runtime/quota.js';
import type { Tenant } from '../tenants/tenant.js';
import { validate } from '../validation.js';
import type { InputOf, Operation, OperationCall, OperationProgress, OutputOf } from './operation.js';

export interface RunOptions {
  readonly onProgress?: (progress: OperationProgress) => void;
}

const ignore = () => undefined;

/** Who runs an operation. */
export type Caller =
  /** The admin token, a global admin's session, the CLI or the library: acts on any tenant it names. */
  | { readonly kind: 'operator'; readonly context: ActionContext }
  /** An API key or a user's session of one tenant: acts in that tenant with what it holds. */
  | { readonly kind: 'tenant'; readonly principal: Principal; readonly tenant: Tenant };

/** The context the library's calls are audited under unless they give their own. */
export const LIBRARY_CONTEXT: ActionContext = Object.freeze({
  actor: Object.freeze({ kind: 'system', id: 'library' }),
});

/**
 * Runs an operation for a caller: checks that the caller may, validates the input against the
 * operation's schema (every front end gets the same checks), runs it and counts a quota refusal
 * in the metrics wherever the call came from.
 */
export async function runOperation<O extends Operation>(
  engine: Engine,
  operation: O,
  input: unknown,
  caller: Caller,
  options: RunOptions = {},
): Promise<OutputOf<O>> {
  allow(operation, caller);
  const checked = validate(operation.input, input ?? {}) as InputOf<O>;
  try {
    return (await operation.run(
      checked,
      callFor(engine, caller, options.onProgress ?? ignore),
    )) as OutputOf<O>;
  } catch (error) {
    countQuotaRefusal(engine.metrics, error);
    throw error;
  }
}

function allow(operation: Operation, caller: Caller): void {
  if (caller.kind === 'operator') {
    if (!operation.access.operator) {
      throw new TenantryError('forbidden', `${operation.name} is for tenant actors, not operators`);
    }
    return;
  }
  const permission = operation.access.tenant;
  if (permission === undefined) throw new TenantryError('forbidden', 'this needs an operator');
  if (!caller.principal.permissions.has(permission)) {
    throw new TenantryError('forbidden', `this needs the permission ${permission}`);
  }
}

function callFor(
  engine: Engine,
  caller: Caller,
  progress: (progress: OperationProgress) => void,
): OperationCall {
  if (caller.kind === 'tenant') {
    return {
      engine,
      progress,
      context: caller.principal.context,
      operator: false,
      async tenant(named) {
        // A tenant actor's operations never name a tenant: its own is the only one there is.
        if (named !== undefined)
          throw new TenantryError('forbidden', 'a tenant actor acts in its own tenant only');
        return caller.tenant;
      },
      principal: () => caller.principal,
    };
  }
  return {
    engine,
    progress,
    context: caller.context,
    operator: true,
    async tenant(named, options) {
      if (named === undefined)
        throw new TenantryError('validation_failed', 'tenant is required', { field: 'tenant' });
      return engine.store.get(named, options);
    },
    principal: (tenant) => engine.identity.operator(tenant.id, caller.context),
  };
}
