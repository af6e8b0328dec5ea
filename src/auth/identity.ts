import type { Database } from '../db/database.js';
import type { Entity } from '../entities/entity.js';
import type { ActionContext } from '../runtime/actor.js';
import { auditedChange } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { FailureLimiter } from '../runtime/failure-limiter.js';
import type { RedisConnection } from '../runtime/redis-connection.js';
import { AccessControl } from './access-control.js';
import { ClientRegistry } from './client-registry.js';
import type { Principal } from './delegation.js';
import { GroupDirectory } from './group-directory.js';
import { LoginService } from './login.js';
import { PermissionCatalogue, type PermissionSet } from './permissions.js';
import { RoleDirectory } from './role-directory.js';
import { SessionStore, type VerifiedSession } from './session-store.js';
import { UserDirectory } from './user-directory.js';

export interface IdentitySettings {
  readonly sessionTtlSeconds: number;
  readonly loginFailuresPerAccount: number;
  readonly loginLockSeconds: number;
  readonly loginFailuresPerAddress: number;
  /** PBKDF2 iterations of client secrets (as API keys). */
  readonly secretIterations: number;
}

export interface IdentityOptions {
  readonly db: Database;
  readonly bus: ChangeBus;
  readonly entities: readonly Entity[];
  readonly settings: IdentitySettings;
  readonly redis: RedisConnection | undefined;
  readonly redisPrefix: string;
  readonly onLimiterFallback?: () => void;
  readonly onLoginLimited?: () => void;
  readonly onBackgroundError?: (error: unknown) => void;
  /** A tenant's `limits.maxUsers`, when it has one. */
  readonly userQuota?: (tenantId: string) => Promise<{ max: number; slug: string } | undefined>;
}

/**
 * People inside tenants: users, roles, groups, sessions and login, with the delegation rule on
 * every change. One per engine.
 *
 * @example
 * const principal = tenantry.identity.operator(tenant.id, context);
 * const { user, setupToken } = await tenantry.identity.users.create(principal, { email: 'ann@acme.test', roles: ['tenant-admin'] });
 */
export class Identity {
  readonly catalogue: PermissionCatalogue;
  readonly access: AccessControl;
  readonly sessions: SessionStore;
  readonly users: UserDirectory;
  readonly roles: RoleDirectory;
  readonly groups: GroupDirectory;
  readonly login: LoginService;
  readonly clients: ClientRegistry;
  readonly #db: Database;
  readonly #bus: ChangeBus;

  constructor(options: IdentityOptions) {
    const { db, bus, settings } = options;
    this.#db = db;
    this.#bus = bus;
    this.catalogue = new PermissionCatalogue(options.entities);
    this.access = new AccessControl(db.owner, bus, this.catalogue);
    this.sessions = new SessionStore({
      owner: db.owner,
      bus,
      ttlSeconds: settings.sessionTtlSeconds,
      ...(options.onBackgroundError ? { onBackgroundError: options.onBackgroundError } : {}),
    });
    this.users = new UserDirectory(db.owner, this.access, bus, options.userQuota);
    this.roles = new RoleDirectory(db.owner, this.access, bus);
    this.groups = new GroupDirectory(db.owner, this.access, bus);
    const limiter = (name: string, failures: number, windowSeconds: number, blockSeconds: number) =>
      new FailureLimiter({
        redis: options.redis,
        prefix: options.redisPrefix,
        name,
        failures,
        windowSeconds,
        blockSeconds,
        ...(options.onLimiterFallback ? { onFallback: options.onLimiterFallback } : {}),
      });
    this.clients = new ClientRegistry(db.owner, bus, settings.secretIterations);
    this.login = new LoginService({
      db: db.owner,
      sessions: this.sessions,
      accountFailures: limiter(
        'login-account',
        settings.loginFailuresPerAccount,
        settings.loginLockSeconds,
        settings.loginLockSeconds,
      ),
      addressFailures: limiter(
        'login-address',
        settings.loginFailuresPerAddress,
        60,
        settings.loginLockSeconds,
      ),
      ...(options.onLoginLimited ? { onLimited: options.onLoginLimited } : {}),
    });
  }

  /** Ends a session in every process at once. */
  async logout(session: VerifiedSession, context: ActionContext): Promise<void> {
    const audit = { action: 'auth.logout', tenantId: session.tenantId ?? undefined, target: session.id };
    await auditedChange({ bus: this.#bus }, this.#db.owner, context, audit, async (tx, record) => {
      await this.sessions.revoke(tx, session.id);
      record.announce({ kind: 'access', tenantId: session.tenantId, userId: session.userId });
    });
  }

  /** An operator (admin token, CLI, global admin) acting in a tenant: holds every tenant permission. */
  operator(tenantId: string, context: ActionContext): Principal {
    return { tenantId, permissions: this.catalogue.all, context, operator: true };
  }

  /** A tenant actor: a user (through its session) or an API key, with what it holds. */
  actor(
    tenantId: string,
    permissions: PermissionSet,
    context: ActionContext,
    userId?: string,
    keyCreatedBy?: string,
  ): Principal {
    return { tenantId, permissions, context, userId, keyCreatedBy };
  }
}
