import fs from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PrismaPg } from '@prisma/adapter-pg';
import type { SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import lockfile from 'proper-lockfile';
import { PrismaClient } from '../generated/prisma/client.js';
import type { Db } from './client.js';
import { applyMigrations } from './migrate.js';

export interface OpenDatabaseOptions {
  /** Server mode: Postgres (>= 15, pgvector >= 0.7) through @prisma/adapter-pg. */
  databaseUrl?: string | undefined;
  /** Embedded mode: PGlite lives in `${dataDir}/pgdata`, owned by this process alone. */
  dataDir: string;
  poolSize?: number;
  /** Tests hand in a ready PGlite (cloned from a migrated template) instead of a data dir. */
  pglite?: PGlite;
  /** Apply pending migrations before returning (default true). */
  migrate?: boolean;
  /** Called with every SQL statement Prisma sends (tests count queries). */
  onQuery?: (sql: string) => void;
  log?: (msg: string) => void;
}

export interface Database {
  prisma: Db;
  adapterFactory: SqlMigrationAwareDriverAdapterFactory;
  mode: 'embedded' | 'server';
  /** The embedded engine, when there is one (raw access for tests and admin tools). */
  pglite?: PGlite;
  close(): Promise<void>;
}

/** A crashed owner's lock is taken over after this long; a live owner refreshes it 5 times as often. */
const LOCK_STALE_MS = 5_000;

/** Raised when another process already owns the embedded data directory. */
export class DataDirLockedError extends Error {
  constructor(dataDir: string) {
    super(
      `DATA_DIR ${dataDir} is in use by another gateway process (or by one that died less than ` +
        `${LOCK_STALE_MS / 1000} s ago). PGlite cannot be shared between processes (concurrent writers ` +
        'corrupt it): stop the other process, choose another DATA_DIR, or run Postgres and set ' +
        'DATABASE_URL to scale out.',
    );
    this.name = 'DataDirLockedError';
  }
}

/**
 * Takes DATA_DIR for this process. proper-lockfile keeps the lock fresh while we run, so a crashed
 * owner's lock goes stale and is taken over after `stale` ms instead of blocking forever.
 * @throws DataDirLockedError when another live process holds it
 */
async function lockDataDir(dataDir: string, onCompromised: (err: Error) => void): Promise<() => Promise<void>> {
  await fs.mkdir(dataDir, { recursive: true });
  try {
    return await lockfile.lock(dataDir, {
      lockfilePath: path.join(dataDir, '.owner.lock'),
      stale: LOCK_STALE_MS,
      update: LOCK_STALE_MS / 5,
      realpath: false,
      onCompromised,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') throw new DataDirLockedError(dataDir);
    throw err;
  }
}

/**
 * Opens the database in embedded (PGlite + pgvector in DATA_DIR) or server (DATABASE_URL) mode.
 * Everything above this function sees the same Prisma client either way.
 * @throws DataDirLockedError in embedded mode when DATA_DIR is owned by another process
 */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  let adapterFactory: SqlMigrationAwareDriverAdapterFactory;
  let pglite: PGlite | undefined;
  let release: (() => Promise<void>) | undefined;
  let mode: Database['mode'];

  if (opts.databaseUrl) {
    mode = 'server';
    adapterFactory = new PrismaPg({ connectionString: opts.databaseUrl, max: opts.poolSize ?? 10 });
  } else {
    mode = 'embedded';
    if (opts.pglite) {
      pglite = opts.pglite;
    } else {
      release = await lockDataDir(opts.dataDir, (err) => {
        // Someone removed or stole our lock: keep no chance of two writers on one data dir.
        opts.log?.(`DATA_DIR lock compromised (${err.message}); exiting`);
        process.exit(70);
      });
      try {
        pglite = await PGlite.create(path.join(opts.dataDir, 'pgdata'), { extensions: { vector } });
      } catch (err) {
        await release();
        throw err;
      }
    }
    adapterFactory = new PrismaPGlite(pglite);
  }

  const prisma = new PrismaClient({
    adapter: adapterFactory,
    log: opts.onQuery ? [{ emit: 'event', level: 'query' }] : [],
  });
  if (opts.onQuery) {
    const onQuery = opts.onQuery;
    (prisma as unknown as { $on(e: 'query', cb: (ev: { query: string }) => void): void }).$on('query', (ev) => onQuery(ev.query));
  }

  const close = async () => {
    await prisma.$disconnect();
    if (pglite && !opts.pglite) await pglite.close();
    await release?.();
  };

  try {
    if (opts.migrate !== false) {
      const { applied } = await applyMigrations(adapterFactory, { log: opts.log });
      if (applied.length > 0) opts.log?.(`applied migrations: ${applied.join(', ')}`);
    }
    await prisma.$connect();
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
  return { prisma, adapterFactory, mode, ...(pglite ? { pglite } : {}), close };
}
