import { planConfigReload } from '../config/config-reload.js';
import type { TenantryConfig } from '../config/config-schema.js';
import { LockKey, withAdvisoryLock } from '../db/advisory-locks.js';
import {
  applyStaticSync,
  planStaticSync,
  type StaticSyncPlan,
  type StaticSyncReport,
  type StaticSyncTenants,
} from '../lifecycle/static-tenant-sync.js';
import { createTenant } from '../lifecycle/tenant-creation.js';
import { setTenantStatus } from '../lifecycle/tenant-status.js';
import { assertTenantSettingsFit } from '../tenants/tenant-settings.js';
import type { Engine } from './engine.js';

/** What `reloadConfig` applied. */
export interface ConfigReloadReport {
  /** Reloadable keys that changed and are in force now. */
  readonly changed: readonly string[];
  /** Keys that changed in the file but apply only at restart. */
  readonly restartRequired: readonly string[];
  readonly sync: StaticSyncReport;
}

/**
 * Applies the config file to a running engine: the tenants it declares (at start and at every
 * reload), and a file read again (SIGHUP) without a restart. Changes run one at a time.
 */
export class ConfigReloader {
  readonly #engine: Engine;
  readonly #tenants: StaticSyncTenants;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(engine: Engine) {
    this.#engine = engine;
    this.#tenants = {
      create: (input, context) => createTenant(engine.lifecycle, input, context),
      update: (id, input, context) => engine.editor.update(id, input, context),
      setStatus: (id, status, context) => setTenantStatus(engine.lifecycle, id, status, context),
    };
  }

  /**
   * Makes the tenants the config file declares (`tenants:`) exist as declared, under an advisory
   * lock, so processes starting at once sync one after the other (the later ones find nothing to
   * do). Throws ConfigError naming the key when the database contradicts the file.
   */
  syncStaticTenants(): Promise<StaticSyncReport> {
    const owner = this.#engine.db.owner;
    return this.#inTurn(() =>
      withAdvisoryLock(owner, LockKey.STATIC_TENANTS, async () => {
        const config = this.#engine.live.current;
        return this.#applySync(await planStaticSync(owner, config), config);
      }),
    );
  }

  /**
   * Applies a config file read again without a restart: plans, `settingsSchema`,
   * `tenancy.defaultPlan`, `defaultIsolation`, `reservedSlugs` and the static tenants. Other
   * changed keys are logged as taking effect at restart and keep their running values. A config
   * the database contradicts is refused with a ConfigError and nothing changes. Requests in
   * flight finish with the tenant values they started with; the next ones see the new plans.
   */
  reload(next: TenantryConfig): Promise<ConfigReloadReport> {
    const engine = this.#engine;
    return this.#inTurn(async () => {
      const reload = planConfigReload(engine.live.current, next);
      if (reload.restartRequired.length > 0) {
        engine.logger.warn(
          { keys: reload.restartRequired },
          `config reload: ${reload.restartRequired.join(', ')} changed; takes effect at restart (the running values stay)`,
        );
      }
      const sync = await withAdvisoryLock(engine.db.owner, LockKey.STATIC_TENANTS, async () => {
        const plan = await planStaticSync(engine.db.owner, reload.config);
        if (reload.changed.includes('settingsSchema') || reload.changed.includes('plans')) {
          await assertTenantSettingsFit(engine.db.owner, reload.config.settingsSchema, reload.config.plans);
        }
        // Nothing was changed before this point: a refused config leaves everything as it was.
        engine.live.replace(reload.config);
        // Cached tenants carry their plan's values: drop them in this process (each process
        // reloads on its own signal, so nothing is announced to the others).
        if (reload.changed.includes('plans')) engine.tenantCache.clear();
        return this.#applySync(plan, reload.config);
      });
      engine.logger.info(
        { changed: reload.changed, restartRequired: reload.restartRequired },
        'config reloaded',
      );
      return { changed: reload.changed, restartRequired: reload.restartRequired, sync };
    });
  }

  async #applySync(plan: StaticSyncPlan, config: TenantryConfig): Promise<StaticSyncReport> {
    const engine = this.#engine;
    const report = await applyStaticSync(plan, {
      tenants: this.#tenants,
      owner: engine.db.owner,
      bus: engine.bus,
      config,
      logger: engine.logger,
    });
    if (report.created.length + report.updated.length + report.activated.length + report.deactivated.length) {
      engine.logger.info(
        {
          created: report.created.map((entry) => entry.slug),
          updated: report.updated.map((entry) => entry.slug),
          activated: report.activated,
          deactivated: report.deactivated,
        },
        'static tenants synced with the config file',
      );
    }
    return report;
  }

  /** Config changes run one at a time: two signals in a row apply in order. */
  #inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
