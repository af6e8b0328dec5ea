import { addServer, listServers, removeServer } from './server-operations.js';

export const serverOperations = [listServers, addServer, removeServer] as const;
