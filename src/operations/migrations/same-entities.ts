import Type from 'typebox';
import type { Engine } from '../../engine/engine.js';
import { TenantryError } from '../../errors.js';

/** The digest of the caller's entity declaration (`entitiesDigest`), when it has one of its own. */
export const EntitiesDigest = Type.String({
  minLength: 1,
  maxLength: 128,
  description: 'The digest of the caller’s declared entities: refused when the server declares others',
});

/**
 * A migration sent to a running server migrates to that server's entities: refuse when the
 * caller's config declares others, so nobody migrates to a declaration they did not mean.
 */
export function requireSameEntities(engine: Engine, digest: string | undefined): void {
  if (digest !== undefined && digest !== engine.schemas.versions.digest) {
    throw new TenantryError(
      'conflict',
      'the running server declares other entities than this config: restart it with this config, then migrate',
    );
  }
}
