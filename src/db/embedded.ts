/**
 * The embedded database's files: PGlite in DATA_DIR/pgdata, copies made before migrations, and the
 * error that explains a damaged one. Used by the gateway (in its database thread) and by db:check.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Extensions, PGlite } from '@electric-sql/pglite';
import { pendingMigrations } from './migrate.js';
import { PGLITE_EXTENSIONS } from './pglite-extensions.js';

/** The embedded database's folder inside DATA_DIR. */
export const PGDATA_DIR_NAME = 'pgdata';

/** Where copies of `pgdata` are kept inside DATA_DIR (made before migrations change an existing database). */
export const BACKUPS_DIR_NAME = 'backups';

/** How many pre-migration copies of `pgdata` are kept; older ones are deleted after a new one is made. */
export const KEEP_MIGRATION_BACKUPS = 3;

/** `pgdata-20261129T224700123Z-before-20261129222822_job_cancelling`: sorts by time. */
const MIGRATION_BACKUP_NAME = /^pgdata-\d{8}T\d{9}Z-before-[^/]+(?<!\.partial)$/;

/** Raised when an existing embedded database cannot be opened (e.g. PGlite's `RuntimeError: Aborted()`). */
export class DatabaseDamagedError extends Error {
  constructor(
    readonly pgdataDir: string,
    readonly dataDir: string,
    cause: unknown,
  ) {
    // PGlite's abort message carries an Emscripten build hint that means nothing to the reader.
    const reason = (cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause))
      .replace(/\s*Build with -sASSERTIONS for more info\.?/, '')
      .replace(/\.$/, '');
    const backups = path.join(dataDir, BACKUPS_DIR_NAME);
    super(
      `The embedded database in ${pgdataDir} could not be opened and may be damaged (${reason}).\n` +
        'To recover (see docs/RECOVERY.md):\n' +
        `  1. Run \`DATA_DIR=${dataDir} npm run db:check\` for a report on what is wrong.\n` +
        `  2. Restore the newest copy in ${backups}/ (pgdata-<time>-before-<migration>): with no gateway running, ` +
        `move ${pgdataDir} aside, copy the backup to ${pgdataDir}, start again.\n` +
        `  3. Or move ${pgdataDir} aside (e.g. mv pgdata pgdata.damaged) to start with an empty database.`,
      { cause },
    );
    this.name = 'DatabaseDamagedError';
  }
}

/** True when DATA_DIR/pgdata exists and is not empty: opening it must find a database, not create one. */
async function pgdataExists(pgdataDir: string): Promise<boolean> {
  try {
    return (await fs.readdir(pgdataDir)).length > 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Opens (or, on first use, creates) the PGlite database in `DATA_DIR/pgdata`. The caller must
 * hold the DATA_DIR lock. Always loads {@link PGLITE_EXTENSIONS}.
 *
 * `sharedBuffersMb` sizes Postgres' page cache (PGlite's default is 128 MB). Pages missing from it
 * are read from the files through Emscripten's file system, a synchronous read on the database's
 * one thread per 8 kB page even when the OS has the file cached: at 100,000 chunks of 1,024
 * dimensions a hybrid search's HNSW graph, BM25 index and rows no longer fit in 128 MB, and 256 MB
 * took its SQL from p50 20.6 / p95 26.6 ms to 17.0 / 23.1 ms (BENCHMARKS.md, Search). The buffers
 * are allocated in PGlite's WebAssembly memory, which cannot pass 2 GB.
 * @throws DatabaseDamagedError when an existing database fails to open
 */
export async function openEmbeddedPglite(
  dataDir: string,
  extensions: Extensions = {},
  opts: { sharedBuffersMb?: number | undefined } = {},
): Promise<{ pglite: PGlite; existed: boolean; pgdataDir: string }> {
  const pgdataDir = path.join(dataDir, PGDATA_DIR_NAME);
  const existed = await pgdataExists(pgdataDir);
  const startParams =
    opts.sharedBuffersMb !== undefined
      ? { startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${opts.sharedBuffersMb}MB`] }
      : {};
  try {
    const pglite = await PGlite.create(pgdataDir, { extensions: { ...PGLITE_EXTENSIONS, ...extensions }, ...startParams });
    return { pglite, existed, pgdataDir };
  } catch (err) {
    if (existed) throw new DatabaseDamagedError(pgdataDir, dataDir, err);
    throw err;
  }
}

/**
 * Copies `DATA_DIR/pgdata` to `DATA_DIR/backups/pgdata-<UTC time>-before-<label>` and keeps the
 * newest {@link KEEP_MIGRATION_BACKUPS} such copies. PGlite must be closed (a cleanly shut down data
 * directory is a consistent copy), and the caller must hold the DATA_DIR lock. The copy appears
 * under its final name only once complete.
 * @returns the backup's path
 */
export async function backupEmbeddedDatabase(dataDir: string, label: string, log?: (msg: string) => void): Promise<string> {
  const dir = path.join(dataDir, BACKUPS_DIR_NAME);
  await fs.mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:.]/g, '');
  const name = `pgdata-${stamp}-before-${label.replace(/[^\w.-]/g, '_')}`;
  const target = path.join(dir, name);
  const partial = `${target}.partial`;
  const started = Date.now();
  try {
    await fs.cp(path.join(dataDir, PGDATA_DIR_NAME), partial, {
      recursive: true,
      preserveTimestamps: true,
      errorOnExist: true,
      force: false,
    });
    await fs.rename(partial, target);
  } catch (err) {
    await fs.rm(partial, { recursive: true, force: true }).catch(() => {});
    throw new Error(
      `Could not copy ${path.join(dataDir, PGDATA_DIR_NAME)} to ${target} (${(err as Error).message}). ` +
        'Nothing was migrated; make room (a copy is as large as pgdata, see docs/RECOVERY.md) and start again.',
      { cause: err },
    );
  }
  log?.(`backed up ${path.join(dataDir, PGDATA_DIR_NAME)} to ${target} in ${Date.now() - started} ms`);

  const entries = await fs.readdir(dir);
  const backups = entries.filter((n) => MIGRATION_BACKUP_NAME.test(n)).sort();
  const stale = [
    ...backups.slice(0, Math.max(0, backups.length - KEEP_MIGRATION_BACKUPS)),
    // Left by a copy interrupted by a crash (we hold the lock, so no copy is under way).
    ...entries.filter((n) => n.startsWith('pgdata-') && n.endsWith('.partial')),
  ];
  for (const old of stale) {
    await fs.rm(path.join(dir, old), { recursive: true, force: true });
    log?.(`removed old backup ${path.join(dir, old)}`);
  }
  return target;
}

/** The pre-migration copies in `DATA_DIR/backups`, newest first (absolute paths). */
export async function listMigrationBackups(dataDir: string): Promise<string[]> {
  const dir = path.join(dataDir, BACKUPS_DIR_NAME);
  const entries = await fs.readdir(dir).catch(() => [] as string[]);
  return entries
    .filter((n) => MIGRATION_BACKUP_NAME.test(n))
    .sort()
    .reverse()
    .map((n) => path.join(dir, n));
}

/**
 * Opens the embedded database for the gateway (the caller holds the DATA_DIR lock): PGlite, and,
 * when migrations are pending on an existing database, a copy of `pgdata` made before they run.
 * Whether any are pending is only known once the database is open, so it is opened, checked, closed
 * for the copy and opened again (the reopen costs well under a second and happens only before
 * migrations).
 * @throws DatabaseDamagedError when the existing database cannot be opened or read
 */
export async function openEmbeddedForGateway(
  dataDir: string,
  opts: { migrate?: boolean; log?: (msg: string) => void; sharedBuffersMb?: number | undefined } = {},
): Promise<PGlite> {
  const open = () => openEmbeddedPglite(dataDir, {}, { sharedBuffersMb: opts.sharedBuffersMb });
  let { pglite, existed, pgdataDir } = await open();
  if (existed && opts.migrate !== false) {
    let pending: string[];
    try {
      pending = await pendingMigrations(async (sql) => (await pglite.query<{ migration_name: string }>(sql)).rows);
    } catch (err) {
      await pglite.close().catch(() => {});
      throw new DatabaseDamagedError(pgdataDir, dataDir, err);
    }
    if (pending.length > 0) {
      await pglite.close();
      await backupEmbeddedDatabase(dataDir, pending[0] as string, opts.log);
      ({ pglite } = await open());
    }
  }
  return pglite;
}
