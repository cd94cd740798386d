/**
 * `npm run db:check`: is the gateway's database healthy? Prints a short report and exits
 *   0  healthy (pending migrations are reported, not a failure: the next start applies them)
 *   1  damaged: the embedded database cannot be opened, or a table cannot be read, or amcheck
 *      finds corruption (or, in server mode, the database cannot be reached)
 *  78  DATA_DIR is in use by a running gateway (embedded mode), or the configuration is invalid
 *
 * Embedded mode (no DATABASE_URL): takes the DATA_DIR lock like the gateway does (so it refuses
 * while a gateway runs), opens `DATA_DIR/pgdata` with PGlite and changes nothing: no migrations,
 * and amcheck runs in a transaction that is rolled back. Server mode (DATABASE_URL set): the same
 * checks through the URL; amcheck only if the server has it and lets this user create it.
 *
 * Settings come from the environment through the gateway's own config loader (DATA_DIR,
 * DATABASE_URL). See docs/RECOVERY.md for what to do with the answer.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { amcheck } from '@electric-sql/pglite/contrib/amcheck';
import pg from 'pg';
import { ConfigError, loadConfig } from '../src/config.js';
import { DataDirLockedError, lockDataDir } from '../src/db/data-dir-lock.js';
import { DatabaseDamagedError, listMigrationBackups, openEmbeddedPglite, PGDATA_DIR_NAME } from '../src/db/database.js';
import { PRISMA_SCHEMA_PATH, pendingMigrations } from '../src/db/migrate.js';

type Row = Record<string, unknown>;
type Query = (sql: string, params?: unknown[]) => Promise<Row[]>;

const EXIT_HEALTHY = 0;
const EXIT_DAMAGED = 1;
const EXIT_LOCKED = 78;

const out = (line: string) => process.stdout.write(`${line}\n`);
const label = (name: string) => `  ${name.padEnd(12)} `;
const firstLine = (err: unknown) =>
  (err instanceof Error ? err.message : String(err)).split('\n')[0]?.replace(/\s*Build with -sASSERTIONS for more info\.?/, '');
const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** The tables of prisma/schema.prisma (a model's @@map name, else its name), plus Prisma's migration table. */
async function schemaTables(): Promise<string[]> {
  const text = await readFile(PRISMA_SCHEMA_PATH, 'utf8');
  const tables: string[] = [];
  for (const [, model, body] of text.matchAll(/^model\s+(\w+)\s*\{([\s\S]*?)^\}/gm)) {
    tables.push(/@@map\(\s*"([^"]+)"\s*\)/.exec(body ?? '')?.[1] ?? (model as string));
  }
  return [...tables, '_prisma_migrations'];
}

/** Runs every check on an open database; returns the problems found (none: healthy). */
async function check(query: Query, embedded: boolean): Promise<string[]> {
  const problems: string[] = [];

  const [version] = await query('SELECT version() AS v');
  out(`${label('open')}ok (${String(version?.v).split(' on ')[0]})`);

  let pending: string[] = [];
  try {
    pending = await pendingMigrations(async (sql) => (await query(sql)) as { migration_name: string }[]);
    // Planned even when not run, so the count is only asked for once the table is known to exist.
    const [history] = await query(`SELECT to_regclass('_prisma_migrations')::text AS t`);
    const [applied] = history?.t
      ? await query('SELECT count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL')
      : [{ n: 0 }];
    out(
      `${label('migrations')}${applied?.n} applied, ${pending.length} pending` +
        (pending.length
          ? ` (${pending.join(', ')}; the next start applies them${embedded ? ', after copying pgdata to DATA_DIR/backups' : ''})`
          : ''),
    );
  } catch (err) {
    problems.push(`migration history unreadable: ${firstLine(err)}`);
    out(`${label('migrations')}FAILED: ${firstLine(err)}`);
  }

  const counts: string[] = [];
  for (const table of await schemaTables()) {
    const [exists] = await query('SELECT to_regclass($1)::text AS t', [table]);
    if (!exists?.t) {
      // A table a pending migration creates is not there yet; any other missing table is damage.
      if (pending.length === 0) problems.push(`table ${table} is missing`);
      counts.push(`${table} missing`);
      continue;
    }
    try {
      const [row] = await query(`SELECT count(*)::bigint::text AS n FROM ${quoteIdent(table)}`);
      counts.push(`${table} ${row?.n}`);
    } catch (err) {
      problems.push(`table ${table} cannot be read: ${firstLine(err)}`);
      counts.push(`${table} FAILED`);
    }
  }
  out(`${label('tables')}${counts.join(', ')}`);

  problems.push(...(await runAmcheck(query)));
  return problems;
}

/**
 * amcheck (PGlite ships it as a contrib extension): bt_index_check on every B-tree index of the
 * app's schema and the system catalogs, verify_heapam on every table of the app's schema. Inside
 * a transaction that is rolled back, so the extension is not left installed.
 */
async function runAmcheck(query: Query): Promise<string[]> {
  const problems: string[] = [];
  await query('BEGIN');
  try {
    try {
      await query('CREATE EXTENSION IF NOT EXISTS amcheck');
    } catch (err) {
      out(`${label('amcheck')}skipped: not available here (${firstLine(err)})`);
      return [];
    }
    const indexes = await query(`
      SELECT c.oid::regclass::text AS name FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_am a ON a.oid = c.relam
        JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE a.amname = 'btree' AND n.nspname IN ('public', 'pg_catalog') AND i.indisvalid AND i.indisready
         AND c.relpersistence <> 't'
       ORDER BY 1`);
    const tables = await query(`
      SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm') ORDER BY 1`);
    // One savepoint per check: an error would otherwise abort every check after it.
    // bt_index_check raises on corruption; verify_heapam returns a row per corrupt tuple.
    const each = async (what: 'index' | 'table', sql: string, name: string) => {
      await query('SAVEPOINT one_check');
      try {
        const rows = await query(sql, [name]);
        await query('RELEASE SAVEPOINT one_check');
        if (what === 'table' && rows.length > 0) {
          const first = rows[0] as Row;
          problems.push(`${what} ${name}: ${rows.length} corrupt tuple(s), e.g. block ${first.blkno} offset ${first.offnum}: ${first.msg}`);
        }
      } catch (err) {
        await query('ROLLBACK TO SAVEPOINT one_check');
        problems.push(`${what} ${name}: ${firstLine(err)}`);
      }
    };
    for (const { name } of indexes) await each('index', 'SELECT bt_index_check($1::regclass)', String(name));
    for (const { name } of tables) await each('table', 'SELECT blkno, offnum, msg FROM verify_heapam($1::regclass)', String(name));
    out(
      `${label('amcheck')}${problems.length ? `${problems.length} problem(s)` : 'ok'}: ` +
        `${indexes.length} B-tree indexes (bt_index_check), ${tables.length} tables (verify_heapam)`,
    );
    return problems;
  } finally {
    await query('ROLLBACK');
  }
}

function report(problems: string[], backups?: string[]): number {
  if (problems.length === 0) {
    out('Healthy.');
    return EXIT_HEALTHY;
  }
  out(`DAMAGED: ${problems.length} problem(s):`);
  for (const p of problems) out(`  - ${p}`);
  if (backups) {
    out('To recover (docs/RECOVERY.md), with no gateway running:');
    out(
      backups[0]
        ? `  - restore the newest pre-migration copy: move pgdata aside, then copy ${backups[0]} to pgdata`
        : '  - restore pgdata from your own backup (there are no pre-migration copies in DATA_DIR/backups)',
    );
    out('  - or move pgdata aside (mv pgdata pgdata.damaged) to start with an empty database');
  } else {
    out('Restore the database from a backup (docs/RECOVERY.md).');
  }
  return EXIT_DAMAGED;
}

async function checkEmbedded(dataDir: string): Promise<number> {
  const pgdataDir = path.join(dataDir, PGDATA_DIR_NAME);
  out(`Database check: embedded PGlite in ${pgdataDir}`);
  if (!existsSync(dataDir)) {
    out(`${label('data dir')}${dataDir} does not exist: nothing to check (the first start creates it).`);
    return EXIT_HEALTHY;
  }
  const lock = await lockDataDir(dataDir);
  let pglite: PGlite | undefined;
  try {
    out(`${label('lock')}taken (no gateway is running on this DATA_DIR)`);
    const backups = await listMigrationBackups(dataDir);
    out(
      `${label('backups')}${backups.length ? `${backups.length} pre-migration copies, newest ${backups[0]}` : 'no pre-migration copies'}`,
    );
    if (!existsSync(pgdataDir)) {
      out(`${label('database')}${pgdataDir} does not exist: nothing to check (the first start creates it).`);
      return EXIT_HEALTHY;
    }
    try {
      ({ pglite } = await openEmbeddedPglite(dataDir, { amcheck }));
    } catch (err) {
      if (!(err instanceof DatabaseDamagedError)) throw err;
      out(`${label('open')}FAILED: ${firstLine(err.cause)}`);
      return report([`the database in ${pgdataDir} cannot be opened (${firstLine(err.cause)})`], backups);
    }
    const db = pglite;
    const query: Query = async (sql, params) => (await db.query<Row>(sql, params)).rows;
    let problems: string[];
    try {
      problems = await check(query, true);
    } catch (err) {
      // PGlite aborts (and is unusable after) on some kinds of damage.
      problems = [`the database failed while being read: ${firstLine(err)}`];
    }
    return report(problems, backups);
  } finally {
    await pglite?.close().catch(() => {});
    await lock.release();
  }
}

async function checkServer(databaseUrl: string): Promise<number> {
  const safeUrl = new URL(databaseUrl);
  safeUrl.password = safeUrl.password ? '***' : '';
  out(`Database check: Postgres at ${safeUrl}`);
  const client = new pg.Client({ connectionString: databaseUrl });
  try {
    await client.connect();
  } catch (err) {
    out(`${label('connect')}FAILED: ${firstLine(err)}`);
    return EXIT_DAMAGED;
  }
  try {
    const query: Query = async (sql, params) => (await client.query(sql, params)).rows;
    let problems: string[];
    try {
      problems = await check(query, false);
    } catch (err) {
      problems = [`the database failed while being read: ${firstLine(err)}`];
    }
    return report(problems);
  } finally {
    await client.end().catch(() => {});
  }
}

async function main(): Promise<number> {
  const config = loadConfig();
  return config.databaseUrl ? checkServer(config.databaseUrl) : checkEmbedded(config.dataDir);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof DataDirLockedError || err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(EXIT_LOCKED);
    }
    process.stderr.write(`db:check failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(EXIT_DAMAGED);
  },
);
