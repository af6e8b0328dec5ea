import { addServer, listServers, removeServer, updateServer } from './server-operations.js';

export const serverOperations = [listServers, addServer, updateServer, removeServer] as const;
