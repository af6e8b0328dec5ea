import Type, { type Static } from 'typebox';
import type { ServerInfo } from './database-servers.js';

/** A database server as operators see it: its runtime connection string never shows a password. */
export const ServerViewSchema = Type.Object({
  name: Type.String(),
  url: Type.String({
    description: 'Runtime connection string, password masked; `embedded` for the in-process database',
  }),
  tenants: Type.Integer({
    description: 'Tenants with their database there (deleted ones not yet purged too)',
  }),
  createdAt: Type.String({ format: 'date-time' }),
});
export type ServerView = Static<typeof ServerViewSchema>;

export function serverView(server: ServerInfo): ServerView {
  return { name: server.name, url: server.url, tenants: server.tenants, createdAt: server.createdAt };
}
