import type { PrismaClient } from '../generated/prisma/client.js';

export type Db = PrismaClient;
/** A transaction client, for domain functions that must run inside a caller's transaction. */
export type Tx = Parameters<Parameters<PrismaClient['$transaction']>[0]>[0];
