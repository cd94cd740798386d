import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './helpers/app.js';
import { type Child, spawnChild } from './helpers/child.js';
import { call } from './helpers/http.js';

/**
 * The real entry point (`src/main.ts`) as separate processes on one DATA_DIR: what a user gets
 * from `npm start` on a fresh clone. Embedded PGlite, local blob store, generated admin key.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
// First boot compiles the sources with tsx, then runs initdb and the migrations: ~6 s alone, over
// 20 s on a busy 2-core machine running other test files alongside.
const BOOT_TIMEOUT = 90_000;
const TEST_TIMEOUT = 120_000;

const children = new Set<Child>();
let dataDir: string;

function startEntry(): Child {
  // A minimal environment: nothing from the test runner (NODE_ENV=test, LOG_LEVEL=silent, VITEST...)
  // and no ADMIN_API_KEY / DATABASE_URL / S3_ENDPOINT / REDIS_URL.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? os.tmpdir(),
    TMPDIR: os.tmpdir(),
    NODE_ENV: 'production',
    DATA_DIR: dataDir,
    // PORT=0 works: the banner prints the port actually bound, so no free-port race.
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
  };
  return spawnChild(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env }, children);
}

interface Running {
  child: Child;
  url: string;
  key: string;
  keyFile: string;
}

/** Starts the entry point and waits for its banner (no sleeps: it fails fast if the process dies). */
async function boot(): Promise<Running> {
  const child = startEntry();
  const [, url] = (await child.waitForStdout(/listening on (http:\/\/[^\s]+)\n/, BOOT_TIMEOUT)) as string[];
  const [, key, keyFile] = (await child.waitForStdout(/Admin key (\S+) {2}\(kept in (.+)\)\n/, 5_000)) as string[];
  return { child, url: url as string, key: key as string, keyFile: keyFile as string };
}

/** Resolves once nothing accepts connections on the URL's port any more. */
async function refusesConnections(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const s = net.connect({ host: hostname, port: Number(port) });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** A raw HTTP/1.1 response read off a socket: status, headers and a Content-Length body. */
function readResponse(socket: net.Socket, after: number): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('utf8');
      const text = buf.slice(after);
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const length = Number(headers['content-length']);
      const body = text.slice(end + 4);
      if (!Number.isFinite(length)) return reject(new Error(`expected a Content-Length response, got:\n${text}`));
      if (Buffer.byteLength(body) < length) return;
      socket.off('data', onData);
      resolve({ status: Number(statusLine?.split(' ')[1]), headers, body });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`connection closed before a full response:\n${buf}`)));
  });
}

/** Log lines at level error or fatal (pino JSON on stdout), plus anything that looks like a crash on stderr. */
function errorLogs(child: Child): string[] {
  const logged = child
    .stdout()
    .split('\n')
    .filter((l) => /^\{.*"level":(50|60)\b/.test(l));
  const crashed = child
    .stderr()
    .split('\n')
    .filter((l) => /error|unhandled|uncaught/i.test(l));
  return [...logged, ...crashed];
}

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-embedded-'));
});

afterAll(async () => {
  await Promise.all([...children].map((c) => c.kill()));
  if (dataDir) await fs.rm(dataDir, { recursive: true, force: true });
});

describe('embedded mode through the real entry point', () => {
  let first: Running;
  const ids: { ws?: string; notes?: string; mount?: string } = {};

  it(
    'first start on an empty DATA_DIR generates, prints and keeps an admin key (mode 0600)',
    async () => {
      first = await boot();
      expect(first.key).toMatch(/^vga_[A-Za-z0-9_-]{40,}$/);
      expect(first.keyFile).toBe(path.join(dataDir, 'admin-api-key'));
      expect((await fs.readFile(first.keyFile, 'utf8')).trim()).toBe(first.key);
      expect((await fs.stat(first.keyFile)).mode & 0o777).toBe(0o600);
      expect(first.child.stdout()).toContain(`embedded PGlite in ${dataDir}; blobs: local`);

      const ready = await call(first, 'GET', '/readyz');
      expect({ status: ready.status, body: ready.body }).toEqual({
        status: 200,
        body: { status: 'ready', database: 'embedded', blob_store: 'local' },
      });
      expect((await call({ ...first, key: 'wrong-key-wrong-key' }, 'GET', '/v1/orgs/emb/workspaces')).status).toBe(401);

      const ws = await call(first, 'POST', '/v1/orgs/emb/workspaces', { name: 'Kept' });
      expect(ws.status).toBe(201);
      ids.ws = ws.body.workspace_id;
      await waitFor(async () => (await call(first, 'GET', `/v1/orgs/emb/workspaces/${ids.ws}`)).body.bucket_status === 'active');
      const vol = await call(first, 'POST', `/v1/orgs/emb/workspaces/${ids.ws}/volumes`, { name: 'notes' });
      expect(vol.status).toBe(201);
      ids.notes = vol.body.volume.volume_id;
      const mount = await call(first, 'POST', `/v1/orgs/emb/workspaces/${ids.ws}/volumes/${ids.notes}/mounts`, { app_id: 'bot' });
      expect(mount.status).toBe(201);
      ids.mount = mount.body.mount.mount_id;
    },
    TEST_TIMEOUT,
  );

  it(
    'a second process on the same DATA_DIR exits 78 with a clear message and leaves the first alone',
    async () => {
      const second = startEntry();
      const code = await second.exited;
      expect(code, second.stderr()).toBe(78);
      expect(second.stderr()).toContain(`DATA_DIR ${dataDir} is in use by another gateway process`);
      expect(second.stdout()).not.toContain('listening on');
      // No generated key was written over the first one's, and the lock is still held.
      expect((await fs.readFile(first.keyFile, 'utf8')).trim()).toBe(first.key);
      await expect(fs.stat(path.join(dataDir, '.owner.lock'))).resolves.toBeTruthy();

      // The first still serves, with the data from before, and takes writes after.
      expect((await call(first, 'GET', '/readyz')).status).toBe(200);
      const after = await call(first, 'POST', `/v1/orgs/emb/workspaces/${ids.ws}/volumes`, { name: 'after' });
      expect(after.status).toBe(201);
      const list = await call(first, 'GET', `/v1/orgs/emb/workspaces/${ids.ws}/volumes`);
      expect(list.body.volumes.map((v: { name: string }) => v.name)).toEqual(['notes', 'after']);

      // A nested read by an org key is compiled into one statement (src/graphql/compiled/): several
      // at once go through different pooled connections of the database thread's one session.
      const orgKey = (await call(first, 'POST', '/v1/orgs/emb/api-keys', { name: 'r', scopes: ['workspaces:read', 'volumes:read'] })).body
        .api_key as string;
      const query =
        '{ workspaces(first: 5) { edges { node { name volumes(first: 5) { edges { node { name mounts(first: 5) { totalCount } } } } } } } }';
      const answers = await Promise.all([1, 2, 3, 4].map(() => call({ ...first, key: orgKey }, 'POST', '/graphql', { query })));
      for (const a of answers) {
        const volumes = a.body.data.workspaces.edges[0].node.volumes.edges.map(
          (e: { node: { name: string; mounts: { totalCount: number } } }) => `${e.node.name}:${e.node.mounts.totalCount}`,
        );
        expect(volumes.sort()).toEqual(['after:0', 'notes:1']);
      }
      expect(first.child.stdout() + first.child.stderr()).not.toContain('compiled read failed');
    },
    TEST_TIMEOUT,
  );

  it(
    'SIGTERM while a request is in flight: the request completes, then the process exits 0',
    async () => {
      const { hostname, port } = new URL(first.url);
      const socket = net.connect({ host: hostname, port: Number(port) });
      try {
        await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
        const body = JSON.stringify({ name: 'inflight' });
        // `Expect: 100-continue`: node's HTTP server answers "100 Continue" once it has parsed the
        // headers and handed the request to the app, so we know the request is in flight before
        // the signal; the body follows only after the server has begun shutting down.
        const cont = new Promise<void>((resolve, reject) => {
          let seen = '';
          const timer = setTimeout(() => reject(new Error(`no "100 Continue" within 10 s; got: ${seen}`)), 10_000);
          const onData = (d: Buffer) => {
            seen += d.toString('utf8');
            if (seen.includes('\r\n\r\n')) {
              clearTimeout(timer);
              socket.off('data', onData);
              if (seen.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) resolve();
              else reject(new Error(`expected "100 Continue", got: ${seen}`));
            }
          };
          socket.on('data', onData);
        });
        const response = readResponse(socket, 'HTTP/1.1 100 Continue\r\n\r\n'.length);
        socket.write(
          `POST /v1/orgs/emb/workspaces/${ids.ws}/volumes HTTP/1.1\r\nHost: ${first.url.slice(7)}\r\n` +
            `Authorization: Bearer ${first.key}\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`,
        );
        await cont;

        expect(first.child.proc.kill('SIGTERM')).toBe(true);
        // The listener closes first: once new connections are refused, shutdown is under way.
        await waitFor(() => refusesConnections(first.url), 10_000);
        socket.write(body);
        const res = await response;
        expect(res.status, res.body).toBe(201);
        expect(JSON.parse(res.body).volume.name).toBe('inflight');
      } finally {
        socket.destroy();
      }

      expect(await first.child.exited).toBe(0);
      expect(errorLogs(first.child)).toEqual([]);
      // The DATA_DIR lock was released on the way out.
      await expect(fs.stat(path.join(dataDir, '.owner.lock'))).rejects.toMatchObject({ code: 'ENOENT' });
    },
    TEST_TIMEOUT,
  );

  it(
    'a restart on the same DATA_DIR keeps every row and reuses the admin key',
    async () => {
      const again = await boot();
      expect(again.key).toBe(first.key);
      expect(again.keyFile).toBe(first.keyFile);
      expect((await fs.stat(again.keyFile)).mode & 0o777).toBe(0o600);

      const workspaces = await call(again, 'GET', '/v1/orgs/emb/workspaces');
      expect(workspaces.status).toBe(200);
      expect(workspaces.body.workspaces).toHaveLength(1);
      expect(workspaces.body.workspaces[0]).toMatchObject({ workspace_id: ids.ws, name: 'Kept', bucket_status: 'active' });
      const volumes = await call(again, 'GET', `/v1/orgs/emb/workspaces/${ids.ws}/volumes`);
      expect(volumes.body.volumes.map((v: { name: string }) => v.name)).toEqual(['notes', 'after', 'inflight']);
      const mounts = await call(again, 'GET', `/v1/orgs/emb/workspaces/${ids.ws}/volumes/${ids.notes}/mounts`);
      expect(mounts.body.mounts.map((m: { mount_id: string; app_id: string }) => [m.mount_id, m.app_id])).toEqual([[ids.mount, 'bot']]);
      await expect(fs.stat(path.join(dataDir, 'blobs', `vg-${ids.ws}`))).resolves.toBeTruthy();

      // SIGTERM on an idle gateway: clean exit, nothing on stderr.
      again.child.proc.kill('SIGTERM');
      expect(await again.child.exited).toBe(0);
      expect(errorLogs(again.child)).toEqual([]);
    },
    TEST_TIMEOUT,
  );
});
