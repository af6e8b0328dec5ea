import type { TenantryConfig } from './config-schema.js';

/**
 * The configuration in force, replaced whole by a reload. Components read `current` at each use
 * (never keep a value of it), so whatever a reload may change takes effect everywhere at once;
 * one operation reads it once and keeps that value for its own length.
 */
export class LiveConfig {
  #current: TenantryConfig;

  constructor(initial: TenantryConfig) {
    this.#current = initial;
  }

  get current(): TenantryConfig {
    return this.#current;
  }

  replace(next: TenantryConfig): void {
    this.#current = next;
  }
}
