import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCK_FILE_NAME, lockDataDir, processStartTime } from '../src/db/data-dir-lock.js';
import { backupEmbeddedDatabase, DataDirLockedError, listMigrationBackups, openDatabase } from '../src/db/database.js';
import { applyMigrations, listMigrationNames, MIGRATIONS_DIR, pendingMigrations } from '../src/db/migrate.js';
import { PGLITE_EXTENSIONS } from '../src/db/pglite-extensions.js';
import { type Child, spawnChild } from './helpers/child.js';
import { ADMIN_KEY, call } from './helpers/http.js';

/**
 * The DATA_DIR single-owner lock (src/db/data-dir-lock.ts), the damaged-database error, the
 * pre-migration backup and `npm run db:check`, with real processes: the gateway's entry point
 * (`src/main.ts`), the db:check script, and small processes that only take the lock.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
// A gateway boot compiles the sources with tsx (and on a fresh DATA_DIR runs initdb and the
// migrations): over 20 s on a busy 2-core machine running other test files alongside.
const BOOT_TIMEOUT = 180_000;
const TEST_TIMEOUT = 420_000;

const children = new Set<Child>();
const tempDirs: string[] = [];

async function tempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

afterAll(async () => {
  for (const c of children) c.proc.kill('SIGCONT');
  await Promise.all([...children].map((c) => c.kill()));
  await Promise.all(tempDirs.map((d) => fs.rm(d, { recursive: true, force: true })));
});

function baseEnv(dataDir: string, logLevel: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? os.tmpdir(),
    TMPDIR: os.tmpdir(),
    NODE_ENV: 'production',
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_API_KEY: ADMIN_KEY,
    LOG_LEVEL: logLevel,
  };
}

/** The real entry point, as `npm start` runs it. At LOG_LEVEL=info it logs "No pending migrations." once the database is open. */
function startGateway(dataDir: string, logLevel = 'warn'): Child {
  return spawnChild(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: baseEnv(dataDir, logLevel) }, children);
}

async function boot(dataDir: string, logLevel = 'warn'): Promise<{ child: Child; url: string }> {
  const child = startGateway(dataDir, logLevel);
  const [, url] = (await child.waitForStdout(/listening on (http:\/\/\S+)\n/, BOOT_TIMEOUT)) as string[];
  return { child, url: url as string };
}

/** `npm run db:check` (the same command, without npm in between). */
function dbCheck(dataDir: string): Child {
  return spawnChild(process.execPath, ['--import', 'tsx', 'scripts/db-check.ts'], { cwd: ROOT, env: baseEnv(dataDir, 'warn') }, children);
}

/**
 * A process that only takes the DATA_DIR lock: prints LOCKED and holds it until its stdin closes,
 * or exits 78 with the refusal. With OWN_PID_FILE=1 it first writes a lock file naming its own pid
 * (what a container restarted as the same pid finds).
 */
function lockTaker(dataDir: string, extraEnv: Record<string, string> = {}): Child {
  const script = `
    import fs from 'node:fs';
    import os from 'node:os';
    import { DataDirLockedError, lockDataDir } from './src/db/data-dir-lock.ts';
    const dir = process.env.DATA_DIR;
    if (process.env.OWN_PID_FILE) {
      fs.writeFileSync(dir + '/.owner.lock', JSON.stringify({ pid: process.pid, hostname: os.hostname(), startedAt: 'earlier', processStartTime: 1, bootId: null }));
    }
    try {
      const lock = await lockDataDir(dir);
      process.stdout.write('LOCKED ' + process.pid + '\\n');
      process.stdin.resume();
      process.stdin.on('end', async () => { await lock.release(); process.exit(0); });
    } catch (err) {
      if (err instanceof DataDirLockedError) { process.stderr.write(err.message + '\\n'); process.exit(78); }
      throw err;
    }`;
  return spawnChild(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script],
    { cwd: ROOT, env: { ...baseEnv(dataDir, 'warn'), ...extraEnv }, stdin: 'pipe' },
    children,
  );
}

const lockFileOf = (dataDir: string) => path.join(dataDir, LOCK_FILE_NAME);
const readLock = async (dataDir: string) => JSON.parse(await fs.readFile(lockFileOf(dataDir), 'utf8'));

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawnChild(process.execPath, ['-e', ''], { env: {} });
  const pid = child.proc.pid as number;
  await child.exited;
  return pid;
}

async function writeLock(dataDir: string, owner: Record<string, unknown>): Promise<string> {
  const text = JSON.stringify({ startedAt: new Date().toISOString(), processStartTime: null, bootId: null, ...owner });
  await fs.writeFile(lockFileOf(dataDir), text);
  return text;
}

describe('the DATA_DIR lock through the real entry point', () => {
  let dataDir: string;
  let a: { child: Child; url: string };

  beforeAll(async () => {
    dataDir = await tempDir('vg-lock-');
  });

  it(
    'a live owner that is SIGSTOPped is never displaced, however long it is stopped',
    async () => {
      a = await boot(dataDir);
      expect((await call(a.url, 'POST', '/v1/orgs/acme/workspaces', { name: 'before-stop' })).status).toBe(201);
      const pidA = a.child.proc.pid as number;
      expect((await readLock(dataDir)).pid).toBe(pidA);

      expect(a.child.proc.kill('SIGSTOP')).toBe(true);
      // A fixed wait is the point of this test: the old staleness-based lock (proper-lockfile)
      // was taken over once the owner had not refreshed it for 5 s. Stay stopped longer than that.
      await new Promise((resolve) => setTimeout(resolve, 7_000));

      // At LOG_LEVEL=info a process that opened the database would log "No pending migrations.".
      const b = startGateway(dataDir, 'info');
      const code = await b.exited;
      expect(code, b.stderr()).toBe(78);
      expect(b.stderr()).toContain(`DATA_DIR ${dataDir} is in use by another gateway process (pid ${pidA} on host ${os.hostname()}`);
      expect(b.stderr()).toContain('however long it is busy or stopped');
      expect(b.stdout()).not.toContain('listening on');
      expect(b.stdout()).not.toMatch(/pending migrations|Applied migration/i);
      expect((await readLock(dataDir)).pid).toBe(pidA);

      expect(a.child.proc.kill('SIGCONT')).toBe(true);
      expect((await call(a.url, 'GET', '/healthz')).status).toBe(200);
      expect((await call(a.url, 'POST', '/v1/orgs/acme/workspaces', { name: 'after-stop' })).status).toBe(201);
    },
    TEST_TIMEOUT,
  );

  it(
    'kill -9 then an immediate restart: the new process starts at once and finds every write',
    async () => {
      const pidA = a.child.proc.pid as number;
      expect((await call(a.url, 'POST', '/v1/orgs/acme/workspaces', { name: 'before-kill' })).status).toBe(201);
      await a.child.kill(); // SIGKILL, and wait until it is gone
      expect((await readLock(dataDir)).pid).toBe(pidA); // the dead owner's file is still there

      const b = await boot(dataDir); // once, no retries
      const names = (await call(b.url, 'GET', '/v1/orgs/acme/workspaces')).body.workspaces.map((w: { name: string }) => w.name);
      expect(names.sort()).toEqual(['after-stop', 'before-kill', 'before-stop']);
      expect((await readLock(dataDir)).pid).toBe(b.child.proc.pid);

      // A clean stop removes the lock file.
      b.child.proc.kill('SIGTERM');
      expect(await b.child.exited).toBe(0);
      await expect(fs.stat(lockFileOf(dataDir))).rejects.toMatchObject({ code: 'ENOENT' });
    },
    TEST_TIMEOUT,
  );

  it(
    'a lock file naming a dead pid is taken over at once; one naming another host is refused with a clear message',
    async () => {
      const dead = await deadPid();
      await writeLock(dataDir, { pid: dead, hostname: os.hostname() });
      const c = await boot(dataDir, 'info');
      expect(c.child.stdout()).toContain(`pid ${dead} is not running`);
      expect((await readLock(dataDir)).pid).toBe(c.child.proc.pid);
      c.child.proc.kill('SIGTERM');
      expect(await c.child.exited).toBe(0);

      const foreign = await writeLock(dataDir, { pid: process.pid, hostname: 'gateway-host-elsewhere' });
      const d = startGateway(dataDir, 'info');
      expect(await d.exited, d.stderr()).toBe(78);
      expect(d.stderr()).toContain(
        `DATA_DIR ${dataDir} is locked by a gateway on another host (pid ${process.pid} on host gateway-host-elsewhere`,
      );
      expect(d.stderr()).toContain(
        `If host gateway-host-elsewhere is gone or its gateway is stopped for sure, delete ${lockFileOf(dataDir)}`,
      );
      expect(d.stdout()).not.toMatch(/pending migrations/i);
      expect(await fs.readFile(lockFileOf(dataDir), 'utf8')).toBe(foreign);
      await fs.rm(lockFileOf(dataDir));
    },
    TEST_TIMEOUT,
  );

  it(
    'a damaged data dir gives the clear error; db:check exits 0 healthy, 1 damaged, 78 while a gateway owns the dir',
    async () => {
      const healthy = dbCheck(dataDir);
      expect(await healthy.exited, healthy.stdout() + healthy.stderr()).toBe(0);
      expect(healthy.stdout()).toMatch(/amcheck +ok/);
      expect(healthy.stdout()).toContain('Healthy.');

      // An empty pg_control reliably makes PGlite abort while opening (RuntimeError: Aborted()).
      const control = path.join(dataDir, 'pgdata', 'global', 'pg_control');
      const saved = await fs.readFile(control);
      await fs.writeFile(control, '');
      try {
        const g = startGateway(dataDir);
        expect(await g.exited).toBe(1);
        const pgdata = path.join(dataDir, 'pgdata');
        expect(g.stderr()).toContain(`The embedded database in ${pgdata} could not be opened and may be damaged (RuntimeError: Aborted()`);
        expect(g.stderr()).toContain('npm run db:check');
        expect(g.stderr()).toContain(`Restore the newest copy in ${path.join(dataDir, 'backups')}/`);
        expect(g.stderr()).toContain(`Or move ${pgdata} aside`);
        // The lock was released on the way out.
        await expect(fs.stat(lockFileOf(dataDir))).rejects.toMatchObject({ code: 'ENOENT' });

        const damaged = dbCheck(dataDir);
        expect(await damaged.exited, damaged.stdout() + damaged.stderr()).toBe(1);
        expect(damaged.stdout()).toContain('DAMAGED');
        expect(damaged.stdout()).toContain('cannot be opened');
      } finally {
        await fs.writeFile(control, saved);
      }

      const g = await boot(dataDir);
      const locked = dbCheck(dataDir);
      expect(await locked.exited, locked.stdout() + locked.stderr()).toBe(78);
      expect(locked.stderr()).toContain(`DATA_DIR ${dataDir} is in use by another gateway process (pid ${g.child.proc.pid}`);
      expect((await call(g.url, 'GET', '/readyz')).status).toBe(200);
      g.child.proc.kill('SIGTERM');
      expect(await g.child.exited).toBe(0);
    },
    TEST_TIMEOUT,
  );
});

describe('the lock alone, between processes', () => {
  it(
    'concurrent starters on a stale lock: exactly one takes it; after its kill -9 the next takes it at once',
    async () => {
      const dir = await tempDir('vg-lock-race-');
      await writeLock(dir, { pid: await deadPid(), hostname: os.hostname() });
      const takers = Array.from({ length: 4 }, () => lockTaker(dir));
      const outcomes = await Promise.all(
        takers.map((t) =>
          t.waitForStdout(/LOCKED (\d+)/, BOOT_TIMEOUT).then(
            () => 'locked' as const,
            () => 'exited' as const,
          ),
        ),
      );
      const winners = takers.filter((_, i) => outcomes[i] === 'locked');
      expect(winners, takers.map((t) => t.stderr()).join('\n')).toHaveLength(1);
      const winner = winners[0] as Child;
      for (const t of takers) {
        if (t === winner) continue;
        expect(await t.exited, t.stderr()).toBe(78);
        expect(t.stderr()).toContain(`is in use by another gateway process (pid ${winner.proc.pid}`);
      }
      expect((await readLock(dir)).pid).toBe(winner.proc.pid);

      await winner.kill();
      const next = lockTaker(dir);
      await next.waitForStdout(/LOCKED/, BOOT_TIMEOUT);
      expect((await readLock(dir)).pid).toBe(next.proc.pid);
      next.proc.stdin?.end();
      expect(await next.exited).toBe(0);
      await expect(fs.stat(lockFileOf(dir))).rejects.toMatchObject({ code: 'ENOENT' });
    },
    TEST_TIMEOUT,
  );

  it(
    'a live pid with the recorded start time is refused; a reused pid (other start time) and our own pid are taken over',
    async () => {
      const dir = await tempDir('vg-lock-pid-');
      // This test process is alive: with its real start time it is the owner.
      const start = await processStartTime(process.pid);
      expect(start).not.toBeNull();
      await writeLock(dir, { pid: process.pid, hostname: os.hostname(), processStartTime: start });
      const refused = lockTaker(dir);
      expect(await refused.exited, refused.stderr()).toBe(78);
      expect(refused.stderr()).toContain(`is in use by another gateway process (pid ${process.pid}`);

      // Same pid, other start time: the pid now belongs to another process.
      await writeLock(dir, { pid: process.pid, hostname: os.hostname(), processStartTime: (start as number) + 1 });
      const reused = lockTaker(dir);
      await reused.waitForStdout(/LOCKED/, BOOT_TIMEOUT);
      reused.proc.stdin?.end();
      expect(await reused.exited).toBe(0);

      // A file naming the starting process's own pid (a container restarted as PID 1) does not lock it out.
      const own = lockTaker(dir, { OWN_PID_FILE: '1' });
      await own.waitForStdout(/LOCKED/, BOOT_TIMEOUT);
      expect((await readLock(dir)).processStartTime).toBe(await processStartTime(own.proc.pid as number));
      own.proc.stdin?.end();
      expect(await own.exited).toBe(0);
    },
    TEST_TIMEOUT,
  );
});

describe('backup before migrations', () => {
  it(
    'an existing database missing the newest migration is copied to DATA_DIR/backups before it is migrated; the copy restores',
    async () => {
      const dataDir = await tempDir('vg-backup-');
      const names = await listMigrationNames();
      const newest = names.at(-1) as string;
      // A migrations folder without the newest migration: the database an older release left.
      const older = path.join(dataDir, 'older-migrations');
      await fs.mkdir(older);
      await fs.copyFile(path.join(MIGRATIONS_DIR, 'migration_lock.toml'), path.join(older, 'migration_lock.toml'));
      for (const name of names.slice(0, -1)) await fs.cp(path.join(MIGRATIONS_DIR, name), path.join(older, name), { recursive: true });

      const pgdata = path.join(dataDir, 'pgdata');
      const pg = await PGlite.create(pgdata, { extensions: PGLITE_EXTENSIONS });
      await applyMigrations(new PrismaPGlite(pg), { migrationsDir: older });
      await pg.exec(`INSERT INTO organizations (id) VALUES ('kept-org')`);
      await pg.close();

      const logs: string[] = [];
      const db = await openDatabase({ dataDir, log: (m) => logs.push(m) });
      try {
        const backups = await listMigrationBackups(dataDir);
        expect(backups).toHaveLength(1);
        const backup = backups[0] as string;
        expect(path.dirname(backup)).toBe(path.join(dataDir, 'backups'));
        expect(path.basename(backup)).toMatch(new RegExp(`^pgdata-\\d{8}T\\d{9}Z-before-${newest}$`));
        expect(logs.join('\n')).toContain(`backed up ${pgdata} to ${backup}`);
        // ...and then migrated.
        expect(await pendingMigrations((sql) => db.prisma.$queryRawUnsafe<{ migration_name: string }[]>(sql))).toEqual([]);
        // A second open in the same process is refused like any other.
        await expect(openDatabase({ dataDir })).rejects.toBeInstanceOf(DataDirLockedError);
      } finally {
        await db.close();
      }

      // Restoring = copying the backup to a pgdata: it opens, as it was before the migration.
      const backup = (await listMigrationBackups(dataDir))[0] as string;
      const restored = path.join(await tempDir('vg-restored-'), 'pgdata');
      await fs.cp(backup, restored, { recursive: true });
      const old = await PGlite.create(restored, { extensions: PGLITE_EXTENSIONS });
      try {
        expect(await pendingMigrations(async (sql) => (await old.query<{ migration_name: string }>(sql)).rows)).toEqual([newest]);
        expect((await old.query(`SELECT id FROM organizations`)).rows).toEqual([{ id: 'kept-org' }]);
      } finally {
        await old.close();
      }

      // Nothing pending: no new copy. The newest three are kept.
      const again = await openDatabase({ dataDir });
      await again.close();
      expect(await listMigrationBackups(dataDir)).toEqual([backup]);
      const lock = await lockDataDir(dataDir);
      try {
        const made: string[] = [];
        for (let i = 0; i < 3; i++) made.push(await backupEmbeddedDatabase(dataDir, `test-${i}`));
        expect(await listMigrationBackups(dataDir)).toEqual(made.reverse());
      } finally {
        await lock.release();
      }
    },
    TEST_TIMEOUT,
  );
});
