/**
 * Opening the database: embedded PGlite in DATA_DIR (the lock here; the database itself in its own
 * thread, database-thread.ts, with its pre-migration copies and damage detection in embedded.ts), a
 * server URL, or (tests) a PGlite handed in; then migrations.
 */
import type { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import type { SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import pg from 'pg';
import pgUtils from 'pg/lib/utils.js';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import type { Config } from '../config.js';
import { type Prisma, PrismaClient } from '../generated/prisma/client.js';
import type { Db } from './client.js';
import { lockDataDir } from './data-dir-lock.js';
import { startDatabaseThread } from './database-thread.js';
import { applyMigrations } from './migrate.js';
import { yieldingPglite } from './yielding-pglite.js';

export { DataDirLockedError } from './data-dir-lock.js';
export {
  BACKUPS_DIR_NAME,
  backupEmbeddedDatabase,
  DatabaseDamagedError,
  KEEP_MIGRATION_BACKUPS,
  listMigrationBackups,
  openEmbeddedPglite,
  PGDATA_DIR_NAME,
} from './embedded.js';

export interface OpenDatabaseOptions {
  /** Server mode: Postgres (>= 15, pgvector >= 0.7) through @prisma/adapter-pg. */
  databaseUrl?: string | undefined;
  /** Embedded mode: PGlite lives in `${dataDir}/pgdata`, owned by this process alone. */
  dataDir: string;
  poolSize?: number;
  /** Longest a query waits for a pooled connection (pg's connectionTimeoutMillis; default 20 s). */
  poolTimeoutMs?: number;
  /** Embedded mode: PGlite's shared_buffers in MB (default PGlite's own, 128). */
  sharedBuffersMb?: number | undefined;
  /** Tests hand in a ready PGlite (cloned from a migrated template) instead of a data dir. */
  pglite?: PGlite;
  /** Apply pending migrations before returning (default true). */
  migrate?: boolean;
  /** Called with every SQL statement Prisma sends (tests count queries). */
  onQuery?: (sql: string) => void;
  log?: (msg: string) => void;
  /** Embedded mode: the database thread died unasked (default: throw, which ends the process). */
  onLost?: (err: Error) => void;
}

export interface Database {
  prisma: Db;
  adapterFactory: SqlMigrationAwareDriverAdapterFactory;
  mode: 'embedded' | 'server';
  /** The embedded engine, when there is one (raw access for tests and admin tools). */
  pglite?: PGlite;
  /**
   * One statement straight on the connection pool, skipping Prisma's client (compiled GraphQL reads:
   * one statement returning JSON, where the client's per-row work is all cost). A PGlite handed in
   * (tests) has no pool: the statement goes through Prisma, which orders it with transactions.
   */
  query: RawQuery;
  /**
   * Statements in one round trip and one implicit transaction (searches: their plan settings, then
   * the search). See InOneQuery.
   */
  queryInOne: InOneQuery;
  /** The connection pool's state (server mode and the embedded database thread; not a PGlite handed in). */
  poolState(): { total: number; idle: number; waiting: number } | undefined;
  close(): Promise<void>;
}

/**
 * `prepare`: a named prepared statement per distinct text (the first PREPARED_STATEMENTS texts; the
 * rest run unnamed), in server mode only: the embedded database thread serves every pooled
 * connection from one PGlite session, where one connection's names would collide with another's.
 */
export type RawQuery = (sql: Pick<Prisma.Sql, 'text' | 'values'>, opts?: { prepare?: boolean }) => Promise<Record<string, unknown>[]>;

/**
 * Runs statements as one simple-protocol query: one round trip, one implicit transaction, and each
 * statement planned just before it runs, so `set_config(…, true)` in one steers the plan of the next.
 * Values are written into the text as quoted literals: the text pg would send for an untyped
 * parameter (`inlineSql`), so they mean what they would as parameters. Returns the last statement's
 * rows. It waits for a connection like any statement, where an interactive transaction gives up
 * after Prisma's `maxWait`.
 */
export type InOneQuery = (statements: Pick<Prisma.Sql, 'strings' | 'values'>[]) => Promise<Record<string, unknown>[]>;

/**
 * A statement with its values written in as literals, each quoted exactly as pg prepares a parameter
 * (`prepareValue`, then `escapeLiteral`): untyped literals, resolved by their context as parameters
 * are. Dates go as ISO text (UTC), as Database.query sends them.
 * @throws Error for binary values (bytea has no place in the statements this serves)
 */
export function inlineSql(sql: Pick<Prisma.Sql, 'strings' | 'values'>): string {
  let text = sql.strings[0] ?? '';
  sql.values.forEach((v, i) => {
    const raw = pgUtils.prepareValue(v instanceof Date ? v.toISOString() : v);
    if (raw !== null && typeof raw !== 'string') throw new Error('inlineSql: binary values cannot be written as literals');
    text += (raw === null ? 'NULL' : pgUtils.escapeLiteral(raw)) + (sql.strings[i + 1] ?? '');
  });
  return text;
}

/**
 * Most distinct statement texts prepared by name. Each is parsed once per pooled connection and kept
 * by the server for the connection's life, so the number is bounded: compiled reads have one text
 * per query shape, and clients could send endless shapes.
 */
export const PREPARED_STATEMENTS = 200;

/** The gateway's database options from its config (createApp and main.ts open it alike). */
export function databaseOptions(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'databasePoolSize' | 'databasePoolTimeoutMs' | 'embeddedSharedBuffersMb'>,
): Pick<OpenDatabaseOptions, 'databaseUrl' | 'dataDir' | 'poolSize' | 'poolTimeoutMs' | 'sharedBuffersMb'> {
  return {
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    poolTimeoutMs: config.databasePoolTimeoutMs,
    sharedBuffersMb: config.embeddedSharedBuffersMb,
  };
}

/**
 * Opens the database in embedded (PGlite + pgvector in DATA_DIR) or server (DATABASE_URL) mode.
 * Everything above this function sees the same Prisma client either way.
 * @throws DataDirLockedError in embedded mode when DATA_DIR is owned by another process
 * @throws DatabaseDamagedError in embedded mode when the existing database cannot be opened
 */
export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  let adapterFactory: SqlMigrationAwareDriverAdapterFactory;
  let pglite: PGlite | undefined;
  let release: (() => Promise<void>) | undefined;
  let mode: Database['mode'];

  let thread: Awaited<ReturnType<typeof startDatabaseThread>> | undefined;
  // Our own pg pool (rather than the adapter's) so /metrics can read its state; ended in close().
  let pgPool: pg.Pool | undefined;
  // Migrations run here, except in the database thread, which applies them before it serves.
  let migrateHere = opts.migrate !== false;

  // A bounded wait for a connection: past it the request is answered 503 (overloadAsUnavailable).
  const pool = { max: opts.poolSize ?? 10, connectionTimeoutMillis: opts.poolTimeoutMs ?? 20_000 };
  if (opts.databaseUrl) {
    mode = 'server';
    pgPool = new pg.Pool({ connectionString: opts.databaseUrl, ...pool });
    adapterFactory = new PrismaPg(pgPool);
  } else if (opts.pglite) {
    // Tests hand in a ready PGlite: it runs on this thread (statements yield to the event loop first).
    mode = 'embedded';
    pglite = opts.pglite;
    adapterFactory = new PrismaPGlite(yieldingPglite(pglite));
  } else {
    mode = 'embedded';
    const lock = await lockDataDir(opts.dataDir, { log: opts.log });
    release = lock.release;
    try {
      thread = await startDatabaseThread({
        dataDir: opts.dataDir,
        migrate: migrateHere,
        maxConnections: (opts.poolSize ?? 10) + 4,
        sharedBuffersMb: opts.sharedBuffersMb,
        log: opts.log,
        onLost:
          opts.onLost ??
          ((err) =>
            process.nextTick(() => {
              throw err;
            })),
      });
    } catch (err) {
      await lock.release();
      throw err;
    }
    migrateHere = false;
    pgPool = new pg.Pool({ ...thread.pg, ...pool });
    adapterFactory = new PrismaPg(pgPool);
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
    try {
      await prisma.$disconnect();
      await pgPool?.end();
      await thread?.close();
    } finally {
      // Only this process could write pgdata, and it no longer will: the next owner may start.
      await release?.();
    }
  };

  try {
    if (migrateHere) {
      const { applied } = await applyMigrations(adapterFactory, { log: opts.log });
      if (applied.length > 0) opts.log?.(`applied migrations: ${applied.join(', ')}`);
    }
    await prisma.$connect();
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
  const prepared = new Map<string, string>();
  // Off for good once the server loses or duplicates a name: a pooler in transaction mode (PgBouncer
  // without max_prepared_statements) hands each statement to any server connection.
  let preparing = mode === 'server';
  const query: RawQuery = async (sql, o = {}) => {
    if (!pgPool) return prisma.$queryRawUnsafe(sql.text, ...sql.values);
    opts.onQuery?.(sql.text);
    // Dates as ISO text: pg would write them in the process's time zone, which TIMESTAMP(3) columns
    // (UTC, no zone) would misread; Prisma sends them as UTC.
    const values = sql.values.map((v) => (v instanceof Date ? v.toISOString() : v));
    const prepare = o.prepare && preparing;
    let name = prepare ? prepared.get(sql.text) : undefined;
    if (prepare && !name && prepared.size < PREPARED_STATEMENTS) {
      name = `vg_${prepared.size}`;
      prepared.set(sql.text, name);
    }
    if (!name) return (await pgPool.query({ text: sql.text, values })).rows;
    try {
      return (await pgPool.query({ name, text: sql.text, values })).rows;
    } catch (err) {
      const code = (err as { code?: string }).code;
      // invalid_sql_statement_name, duplicate_prepared_statement
      if (code !== '26000' && code !== '42P05') throw err;
      preparing = false;
      opts.log?.(`prepared statements lost by the server (${code}): compiled reads now run unprepared (a pooler in transaction mode?)`);
      return (await pgPool.query({ text: sql.text, values })).rows;
    }
  };
  const queryInOne: InOneQuery = async (statements) => {
    const text = statements.map(inlineSql).join(';\n');
    opts.onQuery?.(text);
    // A PGlite handed in (tests) runs it itself, ordered with Prisma's transactions (both take its lock).
    const results = pgPool ? await pgPool.query(text) : await (pglite as PGlite).exec(text);
    const list = (Array.isArray(results) ? results : [results]) as { rows: Record<string, unknown>[] }[];
    return list.at(-1)?.rows ?? [];
  };
  const poolState = () => (pgPool ? { total: pgPool.totalCount, idle: pgPool.idleCount, waiting: pgPool.waitingCount } : undefined);
  return { prisma, adapterFactory, mode, ...(pglite ? { pglite } : {}), query, queryInOne, poolState, close };
}
