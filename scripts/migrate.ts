/**
 * `npm run migrate`: applies pending prisma/migrations to the configured database and exits.
 *
 * Environment: `DATABASE_URL` (server mode, Postgres with pgvector) or, when unset, the embedded
 * PGlite in `${DATA_DIR:-./data}/pgdata`. Opening goes through `openDatabase`, which also takes
 * the DATA_DIR single-owner lock (a running gateway owns the embedded database; it migrates at
 * boot anyway, so this script fails fast instead of corrupting its data) and applies migrations.
 *
 * Never use `prisma migrate deploy` here: offline it reports success and changes nothing.
 */
import path from 'node:path';
import { DataDirLockedError, openDatabase } from '../src/db/database.js';

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL || undefined;
  const dataDir = path.resolve(process.env.DATA_DIR || './data');
  const started = Date.now();
  console.log(databaseUrl ? 'Migrating the database at DATABASE_URL' : `Migrating the embedded database in ${dataDir}`);

  const db = await openDatabase({ databaseUrl, dataDir, log: (msg) => console.log(msg) });
  await db.close();
  console.log(`Done in ${Date.now() - started} ms.`);
}

main().catch((error: unknown) => {
  if (error instanceof DataDirLockedError) console.error(error.message);
  else console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
});
