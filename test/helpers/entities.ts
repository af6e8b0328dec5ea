import { normaliseEntities } from '../../src/entities/entity-config.js';

/** The isolation issue's example config, as declared (a fresh copy each call). */
export function exampleDeclaration() {
  return structuredClone(EXAMPLE_DECLARATION);
}

const EXAMPLE_DECLARATION = {
  projects: {
    scope: 'tenant',
    fields: {
      name: { type: 'text', required: true, unique: true },
      status: { type: 'enum', values: ['active', 'archived'], default: 'active' },
    },
  },
  tasks: {
    scope: 'tenant',
    fields: {
      project: { type: 'ref', to: 'projects', required: true, onDelete: 'cascade' },
      title: { type: 'text', required: true, search: true },
      done: { type: 'boolean', default: false },
      due: { type: 'date' },
      estimate: { type: 'number' },
      meta: { type: 'json' },
    },
  },
  countries: {
    scope: 'shared',
    fields: {
      code: { type: 'text', required: true, unique: true },
      name: { type: 'text' },
    },
  },
};

/** The entities of the isolation issue's example config. */
export const EXAMPLE_ENTITIES = normaliseEntities(EXAMPLE_DECLARATION);
