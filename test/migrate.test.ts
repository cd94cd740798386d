import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, listMigrationNames, MIGRATIONS_DIR, pendingMigrations } from '../src/db/migrate.js';
import { defaultLabel, defaultMountPath } from '../src/domain/volumes/inputs.js';

// PGlite.create takes 3-4 s on these machines; no vitest.config is assumed.
const SLOW = 60_000;

const TABLES = ['api_keys', 'chunks', 'entries', 'fencing_counters', 'jobs', 'locks', 'mounts', 'organizations', 'volumes', 'workspaces'];

function queryFn(db: PGlite) {
  return async (sql: string) => (await db.query<{ migration_name: string }>(sql)).rows;
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

describe('migration files', () => {
  it('MIGRATIONS_DIR is the absolute prisma/migrations of the project', () => {
    expect(path.isAbsolute(MIGRATIONS_DIR)).toBe(true);
    expect(MIGRATIONS_DIR).toBe(path.resolve(import.meta.dirname, '../prisma/migrations'));
  });

  it('lists the init migration first, then the hand-written search indexes', async () => {
    const names = await listMigrationNames();
    expect(names.length).toBeGreaterThanOrEqual(2);
    expect(names[0]).toMatch(/^\d{14}_init$/);
    expect(names[1]).toMatch(/^\d{14}_search_indexes$/);
    const init = await readFile(path.join(MIGRATIONS_DIR, names[0] as string, 'migration.sql'), 'utf8');
    expect(init.startsWith('CREATE EXTENSION IF NOT EXISTS "vector";')).toBe(true);
    expect(await readFile(path.join(MIGRATIONS_DIR, 'migration_lock.toml'), 'utf8')).toContain('provider = "postgresql"');
  });

  it('skips folders without migration.sql and plain files, and sorts by name', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'migrations-'));
    try {
      for (const name of ['20200102000000_b', '20200101000000_a', '20200103000000_empty']) {
        await mkdir(path.join(dir, name));
      }
      await writeFile(path.join(dir, '20200102000000_b', 'migration.sql'), 'SELECT 1;');
      await writeFile(path.join(dir, '20200101000000_a', 'migration.sql'), 'SELECT 1;');
      await writeFile(path.join(dir, 'migration_lock.toml'), 'provider = "postgresql"\n');
      expect(await listMigrationNames(dir)).toEqual(['20200101000000_a', '20200102000000_b']);
      expect(await listMigrationNames(path.join(dir, 'missing'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('embedded PGlite', () => {
  let db: PGlite;
  let names: string[];

  beforeAll(async () => {
    db = await PGlite.create({ extensions: { vector } });
    names = await listMigrationNames();
  }, SLOW);
  afterAll(async () => {
    await db?.close();
  });

  it('applies every migration once, like prisma migrate deploy', { timeout: SLOW }, async () => {
    expect(await pendingMigrations(queryFn(db))).toEqual(names);

    const started = performance.now();
    const first = await applyMigrations(new PrismaPGlite(db));
    const ms = performance.now() - started;
    expect(first.applied).toEqual(names);
    console.info(`applied ${names.length} migrations on a fresh PGlite in ${ms.toFixed(0)} ms`);

    const second = await applyMigrations(new PrismaPGlite(db));
    expect(second.applied).toEqual([]);
    expect(await pendingMigrations(queryFn(db))).toEqual([]);
  });

  it('records one finished row per folder with the sha256 of its file', async () => {
    const { rows } = await db.query<{
      migration_name: string;
      checksum: string;
      finished_at: Date | null;
      rolled_back_at: Date | null;
      applied_steps_count: number;
    }>('SELECT migration_name, checksum, finished_at, rolled_back_at, applied_steps_count FROM _prisma_migrations ORDER BY migration_name');
    expect(rows.map((r) => r.migration_name)).toEqual(names);
    for (const row of rows) {
      expect(row.finished_at).toBeInstanceOf(Date);
      expect(row.rolled_back_at).toBeNull();
      expect(row.applied_steps_count).toBe(1);
      expect(row.checksum).toBe(await sha256(path.join(MIGRATIONS_DIR, row.migration_name, 'migration.sql')));
    }
  });

  it('creates the tables, the vector extension and the search indexes', async () => {
    const tables = await db.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
    expect(tables.rows.map((r) => r.tablename)).toEqual(expect.arrayContaining([...TABLES, '_prisma_migrations']));

    const ext = await db.query("SELECT 1 FROM pg_extension WHERE extname = 'vector'");
    expect(ext.rows).toHaveLength(1);

    const indexes = await db.query<{ indexname: string; indexdef: string }>(
      "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'",
    );
    const byName = new Map(indexes.rows.map((r) => [r.indexname, r.indexdef]));
    for (const dims of [384, 1024, 1536]) {
      const def = byName.get(`chunks_embedding_${dims}_hnsw_idx`);
      expect(def).toMatch(/USING hnsw/);
      expect(def).toContain(`vector(${dims})`);
      expect(def).toContain('vector_cosine_ops');
      // Merged chunks only: the fresh tier stays out of the graph until merged (search/fresh.ts).
      expect(def).toContain(`WHERE ((dims = ${dims}) AND (NOT fresh))`);
    }
    expect(byName.get('chunks_fresh_idx')).toContain('WHERE fresh');
    expect(byName.get('chunks_tsv_idx')).toMatch(/USING gin \(tsv\)/);
    // No pg_textsearch in this PGlite: BM25 as sparse vectors, merged chunks only (search/bm25-sparse.ts).
    expect(byName.get('chunks_bm25_sparse_idx')).toMatch(
      /USING hnsw \(bm25 sparsevec_ip_ops\) WHERE \(\(bm25 IS NOT NULL\) AND \(NOT fresh\)\)/,
    );
  });

  it('leaves the PGlite open and usable, without the migrate advisory lock held', async () => {
    const { rows } = await db.query<{ n: number }>('SELECT 1 AS n');
    expect(rows[0]?.n).toBe(1);
    const locks = await db.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'");
    expect(locks.rows).toHaveLength(0);
  });

  it('stops at a failing migration, records it as failed and reports it pending', { timeout: SLOW }, async () => {
    // Regression test for pglite-prisma-adapter's executeScript, which does not await the script:
    // unpatched, the failing migration below is recorded as applied.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'migrations-'));
    const scratch = await PGlite.create();
    try {
      await writeFile(path.join(dir, 'migration_lock.toml'), 'provider = "postgresql"\n');
      await mkdir(path.join(dir, '20200101000000_ok'));
      await writeFile(path.join(dir, '20200101000000_ok', 'migration.sql'), 'CREATE TABLE "t1" ("id" INTEGER);');
      await mkdir(path.join(dir, '20200102000000_broken'));
      await writeFile(
        path.join(dir, '20200102000000_broken', 'migration.sql'),
        'CREATE TABLE "t2" ("id" INTEGER);\nSELECT * FROM "no_such_table";\n',
      );

      await expect(applyMigrations(new PrismaPGlite(scratch), { migrationsDir: dir })).rejects.toThrow(/no_such_table/);
      expect(await pendingMigrations(queryFn(scratch), dir)).toEqual(['20200102000000_broken']);
      // The script ran as one implicit transaction: its first statement was rolled back too.
      const t2 = await scratch.query("SELECT to_regclass('t2') AS t");
      expect(t2.rows[0]).toEqual({ t: null });
      // Prisma refuses to continue past a failed migration until it is resolved.
      await expect(applyMigrations(new PrismaPGlite(scratch), { migrationsDir: dir })).rejects.toThrow(/failed/i);
    } finally {
      await scratch.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('volume labels, types and mount paths for volumes that existed before them', () => {
  it('fills label and mount_path with the defaults a new volume gets, and volume_type with data', { timeout: SLOW }, async () => {
    const names = await listMigrationNames();
    const added = names.findIndex((n) => n.endsWith('_volume_label_type_mount_path'));
    expect(added).toBeGreaterThan(0);
    // The migrations before it, applied to a database that then gets volumes.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'migrations-'));
    const db = await PGlite.create({ extensions: { vector } });
    try {
      await cp(path.join(MIGRATIONS_DIR, 'migration_lock.toml'), path.join(dir, 'migration_lock.toml'));
      for (const name of names.slice(0, added)) await cp(path.join(MIGRATIONS_DIR, name), path.join(dir, name), { recursive: true });
      await applyMigrations(new PrismaPGlite(db), { migrationsDir: dir });
      await db.query("INSERT INTO organizations (id) VALUES ('o')");
      await db.query(
        "INSERT INTO workspaces (id, org_id, name, s3_bucket, updated_at) VALUES ('01900000-0000-7000-8000-000000000001', 'o', 'w', 'b', now())",
      );
      const volumeNames = [
        'notes',
        'Training Data 2024',
        "Données d'été",
        '  spaced  out  ',
        '数据集',
        '--x__y--',
        'ﬁle Ａ①',
        'n'.repeat(150),
        `${'é'.repeat(120)}${'z'.repeat(30)}`,
      ];
      for (const [i, name] of volumeNames.entries()) {
        await db.query(
          `INSERT INTO volumes (id, workspace_id, org_id, name, created_by, updated_at) VALUES ($1, '01900000-0000-7000-8000-000000000001', 'o', $2, 'admin', now())`,
          [`01900000-0000-7000-8000-1000000000${String(i).padStart(2, '0')}`, name],
        );
      }

      const all = await applyMigrations(new PrismaPGlite(db));
      expect(all.applied).toEqual(names.slice(added));
      const { rows } = await db.query<{ name: string; label: string; mount_path: string; volume_type: string }>(
        'SELECT name, label, mount_path, volume_type::text FROM volumes ORDER BY id',
      );
      expect(rows).toEqual(
        volumeNames.map((name) => ({
          name,
          label: defaultLabel(name),
          mount_path: defaultMountPath(defaultLabel(name)),
          volume_type: 'data',
        })),
      );
      expect(rows.map((r) => r.mount_path).slice(0, 7)).toEqual([
        '/data/notes',
        '/data/training-data-2024',
        '/data/donnees-d-ete',
        '/data/spaced-out',
        '/data/volume',
        '/data/x-y',
        '/data/file-a1',
      ]);
      // Required from now on: a volume without them cannot be written.
      await expect(
        db.query(
          `INSERT INTO volumes (id, workspace_id, org_id, name, created_by, updated_at) VALUES ('01900000-0000-7000-8000-200000000000', '01900000-0000-7000-8000-000000000001', 'o', 'late', 'admin', now())`,
        ),
      ).rejects.toThrow(/null value in column "(label|mount_path)"/);
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('server mode (pglite-socket + @prisma/adapter-pg)', () => {
  let db: PGlite;
  let server: PGLiteSocketServer;
  let url: string;

  beforeAll(async () => {
    db = await PGlite.create({ extensions: { vector } });
    // maxConnections > 1: with 1, the query after any SQL error dies ("Connection terminated").
    server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 10 });
    await server.start();
    url = `postgres://postgres@${server.getServerConn()}/postgres`;
  }, SLOW);
  afterAll(async () => {
    await server?.stop();
    await db?.close();
  });

  it('applies the migrations through PrismaPg, idempotently', { timeout: SLOW }, async () => {
    const names = await listMigrationNames();
    expect(await pendingMigrations(queryFn(db))).toEqual(names);

    expect((await applyMigrations(new PrismaPg({ connectionString: url }))).applied).toEqual(names);
    expect((await applyMigrations(new PrismaPg({ connectionString: url }))).applied).toEqual([]);

    expect(await pendingMigrations(queryFn(db))).toEqual([]);
    const hnsw = await db.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%' ORDER BY 1");
    // Three dimensions of embeddings, and BM25 as sparse vectors (this server has no pg_textsearch).
    expect(hnsw.rows.map((r) => r.indexname)).toEqual([
      'chunks_bm25_sparse_idx',
      'chunks_embedding_1024_hnsw_idx',
      'chunks_embedding_1536_hnsw_idx',
      'chunks_embedding_384_hnsw_idx',
    ]);
    const rows = await db.query<{ checksum: string; migration_name: string }>(
      'SELECT migration_name, checksum FROM _prisma_migrations WHERE finished_at IS NOT NULL',
    );
    expect(rows.rows).toHaveLength(names.length);
    for (const row of rows.rows) {
      expect(row.checksum).toBe(await sha256(path.join(MIGRATIONS_DIR, row.migration_name, 'migration.sql')));
    }
  });
});
