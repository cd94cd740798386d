/**
 * Applying `prisma/migrations` with the WASM schema engine (see schema-engine.ts for why not the
 * CLI). The result is indistinguishable from `prisma migrate deploy`: same `_prisma_migrations`
 * rows and checksums, same advisory lock, same refusal to touch a non-empty unmigrated database.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import { createSchemaEngine, type MigrationList, NO_FILTER } from './schema-engine.js';

/** Absolute path of `prisma/migrations`, independent of the working directory. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations', import.meta.url));

/** Absolute path of the Prisma schema the migrations are generated from. */
export const PRISMA_SCHEMA_PATH = fileURLToPath(new URL('../../prisma/schema.prisma', import.meta.url));

const LOCKFILE = 'migration_lock.toml';
const MIGRATION_FILE = 'migration.sql';

/**
 * Lists migration folder names in the order Prisma applies them (lexicographic, which is
 * chronological thanks to the timestamp prefix). Folders without a `migration.sql` are skipped,
 * as Prisma does. A missing directory means no migrations.
 */
export async function listMigrationNames(dir: string = MIGRATIONS_DIR): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const names: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const file = await stat(path.join(dir, entry.name, MIGRATION_FILE)).catch(() => undefined);
    if (file?.isFile()) names.push(entry.name);
  }
  // Plain code-unit order, like Rust's sort in the engine (localeCompare would differ on '_' vs digits).
  return names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Reads the migrations directory into the structure the schema engine expects. Paths inside are
 * relative to `baseDir`, which must be absolute.
 */
export async function loadMigrationList(dir: string = MIGRATIONS_DIR): Promise<MigrationList> {
  const baseDir = path.resolve(dir);
  const names = await listMigrationNames(baseDir);
  const lockContent = await readFile(path.join(baseDir, LOCKFILE), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  return {
    baseDir,
    shadowDbInitScript: '',
    lockfile: { path: LOCKFILE, content: lockContent },
    migrationDirectories: await Promise.all(
      names.map(async (name) => ({
        path: name,
        migrationFile: {
          path: MIGRATION_FILE,
          content: { tag: 'ok' as const, value: await readFile(path.join(baseDir, name, MIGRATION_FILE), 'utf8') },
        },
      })),
    ),
  };
}

/** Options for {@link applyMigrations}. */
export interface ApplyMigrationsOptions {
  /** Progress and engine warnings, one line each. */
  log?: (msg: string) => void;
  /** Migrations directory; defaults to {@link MIGRATIONS_DIR}. */
  migrationsDir?: string;
}

/**
 * Applies every pending migration, like `prisma migrate deploy`, through the WASM schema engine.
 *
 * Idempotent: applied migrations are recorded in `_prisma_migrations` and skipped next time.
 * Fails (without applying anything) if an applied migration failed earlier or the database has
 * tables but no migration history. Connections opened for this are released before returning;
 * a PGlite instance behind `factory` stays open for the caller.
 *
 * @param factory the adapter factory the app gives PrismaClient (`PrismaPGlite` or `PrismaPg`)
 * @returns the names of the migrations applied by this call, in order
 */
export async function applyMigrations(
  factory: SqlMigrationAwareDriverAdapterFactory,
  opts: ApplyMigrationsOptions = {},
): Promise<{ applied: string[] }> {
  const log = opts.log;
  const migrationsList = await loadMigrationList(opts.migrationsDir ?? MIGRATIONS_DIR);
  // The datamodel only tells the engine about connector settings; apply works without it, so a
  // deployment that ships migrations but not schema.prisma still boots.
  const schema = await readFile(PRISMA_SCHEMA_PATH, 'utf8').catch(() => undefined);

  const { engine, close } = await createSchemaEngine({
    adapterFactory: factory,
    datamodel: schema === undefined ? undefined : { path: PRISMA_SCHEMA_PATH, content: schema },
    log: (line) => {
      if (line.level === 'WARN' || line.level === 'ERROR') log?.(`schema engine ${line.level}: ${line.message}`);
    },
  });
  try {
    const { appliedMigrationNames } = await engine.applyMigrations({ migrationsList, filters: NO_FILTER });
    if (log) {
      if (appliedMigrationNames.length === 0) log('No pending migrations.');
      for (const name of appliedMigrationNames) log(`Applied migration ${name}`);
    }
    return { applied: appliedMigrationNames };
  } finally {
    await close();
  }
}

/**
 * Names of migration folders not (successfully) applied yet, for readiness checks.
 *
 * A migration counts as applied when it has a row with `finished_at` set and `rolled_back_at`
 * null. A database without `_prisma_migrations` has everything pending. Only reads.
 *
 * @param query runs one SQL statement and returns its rows (e.g. `sql => prisma.$queryRawUnsafe(sql)`)
 * @param dir migrations directory; defaults to {@link MIGRATIONS_DIR}
 */
export async function pendingMigrations(
  query: (sql: string) => Promise<{ migration_name: string }[]>,
  dir: string = MIGRATIONS_DIR,
): Promise<string[]> {
  const names = await listMigrationNames(dir);
  // Probe first instead of catching "relation does not exist": an error inside a caller's
  // transaction would abort it. to_regclass resolves through search_path, like the engine.
  const [probe] = await query(`SELECT to_regclass('_prisma_migrations')::text AS migration_name`);
  if (!probe?.migration_name) return names;
  const rows = await query(`SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`);
  const applied = new Set(rows.map((row) => row.migration_name));
  return names.filter((name) => !applied.has(name));
}
