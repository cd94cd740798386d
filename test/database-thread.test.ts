import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { type DatabaseThread, SOCKET_DIR_RECORD, startDatabaseThread } from '../src/db/database-thread.js';
import { openEmbeddedPglite } from '../src/db/embedded.js';

// Embedded mode's database runs in its own thread behind a private Unix socket: the statements it
// runs never hold the gateway's event loop, and a clean close leaves a data dir that opens again.

let dataDir: string;
let thread: DatabaseThread;
const lost: Error[] = [];

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-thread-'));
  thread = await startDatabaseThread({ dataDir, migrate: true, maxConnections: 4, sharedBuffersMb: 48, onLost: (err) => lost.push(err) });
}, 120_000);

afterAll(async () => {
  await thread?.close();
  await fs.rm(dataDir, { recursive: true, force: true });
});

describe('the embedded database thread', () => {
  it('serves the migrated database on a socket only its owner can reach', async () => {
    const client = new pg.Client(thread.pg);
    await client.connect();
    try {
      const { rows } = await client.query('SELECT count(*)::int AS n FROM _prisma_migrations WHERE finished_at IS NOT NULL');
      expect(rows[0].n).toBeGreaterThan(0);
      expect((await client.query("SELECT extname FROM pg_extension WHERE extname = 'vector'")).rowCount).toBe(1);
      // EMBEDDED_SHARED_BUFFERS_MB reaches the database (PGlite's own default is 128MB).
      expect((await client.query('SHOW shared_buffers')).rows[0].shared_buffers).toBe('48MB');
    } finally {
      await client.end();
    }
    expect((await fs.stat(thread.pg.host)).mode & 0o777).toBe(0o700);
  });

  it('a statement that keeps the database busy for a second leaves the event loop free', async () => {
    const client = new pg.Client(thread.pg);
    await client.connect();
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      // Busy work inside the database (PGlite computes it synchronously on its own thread).
      const started = performance.now();
      await client.query('SELECT count(*) FROM generate_series(1, 3000000) g WHERE md5(g::text) LIKE $1', ['0%']);
      const elapsed = performance.now() - started;
      clearInterval(timer);
      // On the event loop the timer could not have fired during the query; here it fires throughout.
      expect(elapsed).toBeGreaterThan(200);
      expect(ticks).toBeGreaterThan((elapsed / 10) * 0.3);
    } finally {
      await client.end();
    }
  }, 60_000);

  it('two connections: a transaction on one holds the other until it ends (one session, never interleaved)', async () => {
    const a = new pg.Client(thread.pg);
    const b = new pg.Client(thread.pg);
    await Promise.all([a.connect(), b.connect()]);
    try {
      await a.query('CREATE TABLE IF NOT EXISTS thread_probe (v int)');
      await a.query('BEGIN');
      await a.query('INSERT INTO thread_probe VALUES (1)');
      let bDone = false;
      const bRead = b.query('SELECT count(*)::int AS n FROM thread_probe').then((r) => {
        bDone = true;
        return r.rows[0].n as number;
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(bDone).toBe(false);
      await a.query('COMMIT');
      expect(await bRead).toBe(1);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('closes cleanly: the socket folder is gone and the data dir opens again with every row', async () => {
    const socketDir = thread.pg.host;
    await thread.close();
    await expect(fs.stat(socketDir)).rejects.toMatchObject({ code: 'ENOENT' });
    const { pglite } = await openEmbeddedPglite(dataDir);
    try {
      const { rows } = await pglite.query<{ n: number }>('SELECT count(*)::int AS n FROM thread_probe');
      expect(rows[0]?.n).toBe(1);
    } finally {
      await pglite.close();
    }
    expect(lost).toEqual([]);
  });

  it('a socket folder left by a gateway killed outright is removed by the next one to open the data dir, and nothing else is', async () => {
    const record = path.join(dataDir, SOCKET_DIR_RECORD);
    const start = () => startDatabaseThread({ dataDir, migrate: true, maxConnections: 2, onLost: (err) => lost.push(err) });
    // What SIGKILL leaves behind: the socket folder, and DATA_DIR's record of it.
    const left = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-db-'));
    await fs.writeFile(path.join(left, '.s.PGSQL.5432'), '');
    await fs.writeFile(record, left);
    const next = await start();
    try {
      await expect(fs.stat(left)).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await fs.readFile(record, 'utf8')).toBe(next.pg.host);
    } finally {
      await next.close();
    }
    await expect(fs.stat(record)).rejects.toMatchObject({ code: 'ENOENT' });

    // A record naming a folder this code does not make (another name, or not directly in the temp dir) is dropped, the folder kept.
    for (const other of [await fs.mkdtemp(path.join(os.tmpdir(), 'vg-keep-')), path.join(dataDir, 'vg-db-inside')]) {
      await fs.mkdir(other, { recursive: true });
      await fs.writeFile(record, other);
      const again = await start();
      await again.close();
      expect((await fs.stat(other)).isDirectory()).toBe(true);
      await expect(fs.stat(record)).rejects.toMatchObject({ code: 'ENOENT' });
      await fs.rm(other, { recursive: true, force: true });
    }
    expect(lost).toEqual([]);
  }, 120_000);
});

describe('EMBEDDED_SHARED_BUFFERS_MB', () => {
  it('defaults to 256 MB and refuses sizes PGlite cannot hold, naming the variable', () => {
    expect(loadConfig({}).embeddedSharedBuffersMb).toBe(256);
    expect(loadConfig({ EMBEDDED_SHARED_BUFFERS_MB: '512' }).embeddedSharedBuffersMb).toBe(512);
    for (const bad of ['8', '2048', '256MB', '1.5'])
      expect(() => loadConfig({ EMBEDDED_SHARED_BUFFERS_MB: bad })).toThrow(/EMBEDDED_SHARED_BUFFERS_MB/);
  });
});
