/** Who performed an action, as the audit log records it. */
export interface Actor {
  readonly kind: 'admin-token' | 'cli' | 'system' | 'api-key' | 'anonymous' | 'user' | 'client';
  /** A stable, non-secret name: an OS user for the CLI, a key id for a key, a user or client id, `admin` for the token. */
  readonly id: string;
}

/** The circumstances of an engine call: needed for the audit entry every admin action writes. */
export interface ActionContext {
  readonly actor: Actor;
  readonly clientAddress?: string | undefined;
  readonly requestId?: string | undefined;
}

export const SYSTEM_CONTEXT: ActionContext = Object.freeze({
  actor: Object.freeze({ kind: 'system', id: 'tenantry' }),
});

export function actorLabel(actor: Actor): string {
  return `${actor.kind}:${actor.id}`;
}
