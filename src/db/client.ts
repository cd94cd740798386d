import type { PrismaClient } from '../generated/prisma/client.js';

export type Db = PrismaClient;
/** A transaction client, for domain functions that must run inside a caller's transaction. */
export type Tx = Parameters<Parameters<PrismaClient['$transaction']>[0]>[0];

/**
 * The process's Prisma client. Set once by `createApp` (src/app.ts) when the database opens; domain
 * modules import it rather than receiving it through the request context.
 */
export let db: Db;

export function setDb(client: Db | undefined): void {
  db = client as Db;
}
