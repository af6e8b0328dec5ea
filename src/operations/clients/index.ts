import { createClient } from './create-client.js';
import { listAllClients, listClients } from './list-clients.js';
import { revokeClient } from './revoke-client.js';

export const clientOperations = [listClients, listAllClients, createClient, revokeClient] as const;
