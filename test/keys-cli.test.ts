import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, createApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { ADMIN_KEY, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type Child, spawnChild } from './helpers/child.js';
import { call } from './helpers/http.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

/**
 * The keys CLI (src/cli/keys.ts) as a user runs it: a separate process, configured like the gateway,
 * writing straight into the database. Server mode: a fresh PGlite behind pglite-socket, gateways in
 * this process on it (one sharing Redis, one not). Embedded mode: a real DATA_DIR and its lock.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const REDIS_URL = 'redis://127.0.0.1:6379';
const children = new Set<Child>();
const temps: string[] = [];

interface Run {
  code: number | NodeJS.Signals;
  stdout: string;
  stderr: string;
}

/** Runs the CLI from the sources (tsx) with only `env` (no .env file) and waits for it to exit. */
async function keys(args: string[], env: Record<string, string>): Promise<Run> {
  const child = spawnChild(
    process.execPath,
    ['--import', 'tsx', 'src/cli/keys.ts', ...args],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? os.tmpdir(),
        TMPDIR: os.tmpdir(),
        ENV_FILE: '',
        LOG_LEVEL: 'warn',
        ...env,
      },
    },
    children,
  );
  const code = await child.exited;
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

/** One line on stderr, no stack frames. */
function expectOneLineError(run: Run, pattern: RegExp): void {
  const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expect(run.stdout).toBe('');
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

afterAll(async () => {
  for (const c of children) await c.kill();
  for (const dir of temps) await fs.rm(dir, { recursive: true, force: true });
});

describe('server mode (DATABASE_URL)', () => {
  let db: PgliteServer | undefined;
  let cliEnv: Record<string, string>;
  /** Shares Redis with the CLI and caches lookups for 5 minutes: only the revocation event can make it refuse a key soon. */
  let withRedis: TestGateway | undefined;
  /** No Redis: it learns of a revocation when its cached lookup (1.5 s) expires. */
  let noRedis: TestGateway | undefined;
  let admin: { secret: string; id: string };
  let reader: { secret: string; id: string };

  beforeAll(async () => {
    db = await startPgliteServer(40);
    cliEnv = { DATABASE_URL: db.url, DATABASE_POOL_SIZE: '3' };
  });
  afterAll(async () => {
    await withRedis?.stop().catch((err) => console.error('gateway stop failed', err));
    await noRedis?.stop().catch((err) => console.error('gateway stop failed', err));
    await db?.stop();
  });

  it('creates the first key on a fresh database (migrating it, as a gateway start does) and a gateway without ADMIN_API_KEY accepts it', async () => {
    const run = await keys(['create', '--org', 'acme', '--scopes', 'admin', '--name', 'first admin', '--json'], cliEnv);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/applied migrations: /);
    const created = JSON.parse(run.stdout);
    expect(created.api_key).toMatch(/^vgk_[A-Za-z0-9_-]{43}$/);
    expect(created.key).toMatchObject({
      org_id: 'acme',
      name: 'first admin',
      scopes: ['admin'],
      app_id: null,
      prefix: created.api_key.slice(0, 12),
      revoked_at: null,
    });
    admin = { secret: created.api_key, id: created.key.key_id };

    // Stored as the domain stores keys: the hash, never the secret.
    const rows = await db!.pg.query<Record<string, unknown>>('SELECT * FROM api_keys');
    expect(rows.rows).toHaveLength(1);
    expect(rows.rows[0]).toMatchObject({ id: admin.id, secret_hash: sha256(admin.secret) });
    expect(JSON.stringify(rows.rows)).not.toContain(admin.secret);

    withRedis = await startGateway({
      DATABASE_URL: db!.url,
      DATABASE_POOL_SIZE: '5',
      ADMIN_API_KEY: '',
      REDIS_URL,
      KEY_CACHE_TTL_MS: '300000',
    });
    expect(withRedis.app.adminApiKey).toBeUndefined();
    expect((await withRedis.call('POST', '/v1/orgs/acme/workspaces', { name: 'w' }, null)).status).toBe(401);
    const ws = await withRedis.call('POST', '/v1/orgs/acme/workspaces', { name: 'first' }, admin.secret);
    expect(ws.status, JSON.stringify(ws.body)).toBe(201);
    // An org key, not a platform key: another organisation does not exist for it.
    expect((await withRedis.call('POST', '/v1/orgs/other/workspaces', { name: 'w' }, admin.secret)).status).toBe(404);
  });

  it('creates keys while gateways run, and lists them (from an ENV_FILE) without their secrets', async () => {
    const human = await keys(['create', '--org', 'acme', '--name', 'reader', '--scopes', 'workspaces:read'], cliEnv);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toMatch(/shown only this once/);
    const secret = /^secret:\s+(vgk_\S+)$/m.exec(human.stdout)?.[1];
    const id = /^key_id:\s+(\S+)$/m.exec(human.stdout)?.[1];
    expect(secret, human.stdout).toBeDefined();
    expect(id, human.stdout).toMatch(/^[0-9a-f-]{36}$/);
    reader = { secret: secret!, id: id! };
    expect((await withRedis!.call('GET', '/v1/orgs/acme/workspaces', undefined, reader.secret)).status).toBe(200);
    const refused = await withRedis!.call('POST', '/v1/orgs/acme/workspaces', { name: 'no' }, reader.secret);
    expect(refused.status).toBe(403);
    expect(refused.body.details.required_permission).toBe('workspaces:write');

    const app = await keys(['create', '--org', 'acme', '--scopes', 'entries:read, search', '--app', 'bot', '--json'], cliEnv);
    expect(app.code, app.stderr).toBe(0);
    const appKey = JSON.parse(app.stdout);
    expect(appKey.key).toMatchObject({ app_id: 'bot', scopes: ['entries:read', 'search'], name: 'keys-cli' });

    // The configuration comes from a file, as the gateway reads it.
    const envFile = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'vg-keys-env-')), 'gateway.env');
    temps.push(path.dirname(envFile));
    await fs.writeFile(envFile, `DATABASE_URL=${db!.url}\nDATABASE_POOL_SIZE=3\n`);
    const [listed, table] = await Promise.all([
      keys(['list', '--org', 'acme', '--json'], { ENV_FILE: envFile }),
      keys(['list', '--org', 'acme'], cliEnv),
    ]);
    expect(listed.code, listed.stderr).toBe(0);
    const list = JSON.parse(listed.stdout);
    expect(list.total).toBe(3);
    expect(list.api_keys.map((k: { key_id: string }) => k.key_id)).toEqual([admin.id, reader.id, appKey.key.key_id]);
    expect(list.api_keys[1]).toMatchObject({
      name: 'reader',
      scopes: ['workspaces:read'],
      prefix: reader.secret.slice(0, 12),
      revoked_at: null,
    });
    expect(Object.keys(list.api_keys[0]).sort()).toEqual(
      ['app_id', 'created_at', 'created_by', 'key_id', 'last_used_at', 'name', 'org_id', 'prefix', 'revoked_at', 'scopes'].sort(),
    );
    // The gateway recorded the admin key's use; the CLI reads the same database.
    expect(list.api_keys[0].last_used_at).not.toBeNull();

    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^KEY ID\s+NAME\s+PREFIX\s+SCOPES/);
    for (const k of [admin, reader]) expect(table.stdout).toContain(k.id);
    expect(table.stdout).toMatch(new RegExp(`${reader.id}\\s+reader\\s+${reader.secret.slice(0, 12)}\\s+workspaces:read\\s+-`));
    for (const out of [listed.stdout, table.stdout]) {
      for (const s of [admin.secret, reader.secret, appKey.api_key]) expect(out).not.toContain(s);
    }
  });

  it('revokes a key: a gateway sharing REDIS_URL refuses it at once, one without Redis once its cached lookup expires', async () => {
    noRedis = await startGateway({ DATABASE_URL: db!.url, DATABASE_POOL_SIZE: '5', ADMIN_API_KEY: '', KEY_CACHE_TTL_MS: '1500' });
    // Both gateways have the key's lookup cached now.
    for (const gw of [withRedis!, noRedis])
      expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, reader.secret)).status).toBe(200);

    const run = await keys(['revoke', '--org', 'acme', reader.id], { ...cliEnv, REDIS_URL });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^Revoked API key ${reader.id} \\("reader"\\) in org acme`));
    expect(run.stderr).toMatch(/share REDIS_URL drop it at once/);
    // withRedis would trust its cached lookup for 5 minutes: only the event explains a refusal now.
    await waitFor(async () => (await withRedis!.call('GET', '/v1/orgs/acme/workspaces', undefined, reader.secret)).status === 401, 15_000);
    await waitFor(async () => (await noRedis!.call('GET', '/v1/orgs/acme/workspaces', undefined, reader.secret)).status === 401, 15_000);
    // Only that key.
    expect((await withRedis!.call('GET', '/v1/orgs/acme/workspaces', undefined, admin.secret)).status).toBe(200);

    const again = await keys(['revoke', '--org', 'acme', reader.id, '--json'], cliEnv);
    expect(again.code, again.stderr).toBe(0);
    const revoked = JSON.parse(again.stdout);
    expect(revoked.key).toMatchObject({ key_id: reader.id, name: 'reader' });
    expect(revoked.key.revoked_at).not.toBeNull();
    // Without REDIS_URL the CLI says how long running gateways may still accept the key.
    expect(again.stderr).toMatch(/KEY_CACHE_TTL_MS/);

    // An unreachable Redis does not undo or crash a revocation: it is done, with a warning.
    const spare = JSON.parse((await keys(['create', '--org', 'acme', '--scopes', 'search', '--json'], cliEnv)).stdout);
    const offline = await keys(['revoke', '--org', 'acme', spare.key.key_id], { ...cliEnv, REDIS_URL: 'redis://127.0.0.1:1' });
    expect(offline.code, offline.stderr).toBe(0);
    expect(offline.stderr).toMatch(/warning: REDIS_URL does not answer/);
    expect(offline.stderr).not.toMatch(/\n\s+at /);
    const row = await db!.pg.query<{ revoked: boolean }>('SELECT revoked_at IS NOT NULL AS revoked FROM api_keys WHERE id = $1', [
      spare.key.key_id,
    ]);
    expect(row.rows).toEqual([{ revoked: true }]);
  });

  it('refuses bad input with one line naming the flag (exit 2), unknown keys with exit 1, and writes nothing', async () => {
    const before = await db!.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys');
    const missing = randomUUID();
    const cases: [args: string[], env: Record<string, string>, code: number, stderr: RegExp][] = [
      [
        ['create', '--org', 'acme', '--scopes', 'admin,superuser'],
        cliEnv,
        2,
        /^volumes-gateway-keys: --scopes: .*'admin'.*\(got 'superuser'\)$/,
      ],
      [['create', '--org', 'bad org!', '--scopes', 'admin'], cliEnv, 2, /^volumes-gateway-keys: --org: .*\(got 'bad org!'\)$/],
      [['create', '--scopes', 'admin'], cliEnv, 2, /--org is required/],
      [['create', '--org', 'acme'], cliEnv, 2, /--scopes is required/],
      [['create', '--org', 'acme', '--scopes', 'admin', '--name', '  '], cliEnv, 2, /--name: /],
      // The app-key rule lives in createApiKey, after the database is open.
      [['create', '--org', 'acme', '--scopes', 'admin,search', '--app', 'bot'], cliEnv, 2, /--scopes: app keys cannot hold: admin$/],
      [['create', '--org', 'acme', '--scopes', 'admin', '--bogus'], cliEnv, 2, /unknown option --bogus/],
      [['create', '--org', 'acme', '--scopes', 'admin', '--expires-in', '30d'], cliEnv, 2, /--expires-in: API keys do not expire/],
      [['frobnicate'], cliEnv, 2, /unknown command 'frobnicate'/],
      [['revoke', '--org', 'acme'], cliEnv, 2, /the key id is required/],
      [['revoke', '--org', 'acme', missing], cliEnv, 1, new RegExp(`no API key ${missing} in org acme`)],
      // Another organisation's key is not found, exactly as through the API.
      [['revoke', '--org', 'other', admin.id], cliEnv, 1, new RegExp(`no API key ${admin.id} in org other`)],
      [['list', '--org', 'acme'], { DATABASE_URL: 'not a url' }, 78, /DATABASE_URL/],
      [
        ['list', '--org', 'acme'],
        { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/postgres' },
        1,
        /^volumes-gateway-keys: failed: Can't reach database server at `127.0.0.1:1`$/,
      ],
    ];
    // Two at a time: each is a process compiling the sources.
    const runs: Run[] = [];
    for (let i = 0; i < cases.length; i += 2) {
      runs.push(...(await Promise.all(cases.slice(i, i + 2).map(([args, env]) => keys(args, env)))));
    }
    cases.forEach(([args, , code, stderr], i) => {
      const run = runs[i] as Run;
      expect({ args, code: run.code }, run.stderr).toEqual({ args, code });
      if (code === 78) {
        expect(run.stderr).toMatch(stderr);
        expect(run.stderr).not.toMatch(/\n\s+at /);
      } else expectOneLineError(run, stderr);
    });

    const after = await db!.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys');
    expect(after.rows[0]?.n).toBe(before.rows[0]?.n);
    // And the admin key still works (nothing was revoked by the failed runs).
    expect((await withRedis!.call('GET', '/v1/orgs/acme/workspaces', undefined, admin.secret)).status).toBe(200);
  });
});

describe('embedded mode (DATA_DIR)', () => {
  const apps: App[] = [];
  afterAll(async () => {
    for (const app of apps) await app.stop().catch(() => {});
  });

  async function startEmbedded(dataDir: string): Promise<{ app: App; url: string }> {
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, HOST: '127.0.0.1' });
    const app = await createApp(config);
    apps.push(app);
    return { app, url: await app.start(0) };
  }

  it('refuses while a gateway owns DATA_DIR, and mints a key the gateway accepts once it has stopped', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-keys-embedded-'));
    temps.push(dataDir);
    const env = { DATA_DIR: dataDir };

    // No database there yet: nothing is created by the CLI.
    const empty = await keys(['create', '--org', 'emb', '--scopes', 'admin'], env);
    expect(empty.code).toBe(1);
    expectOneLineError(empty, /no embedded database in DATA_DIR /);
    expect(await fs.readdir(dataDir)).toEqual([]);

    const first = await startEmbedded(dataDir);
    const locked = await keys(['create', '--org', 'emb', '--scopes', 'admin'], env);
    expect(locked.code).toBe(78);
    expectOneLineError(
      locked,
      new RegExp(
        `cannot open the embedded database while a gateway runs on it: DATA_DIR ${dataDir} is in use by another gateway process \\(pid ${process.pid}`,
      ),
    );
    // The gateway is untouched and nothing was written.
    expect((await call(first.url, 'GET', '/v1/orgs/emb/api-keys')).body.total).toBe(0);
    await first.app.stop();

    const run = await keys(['create', '--org', 'emb', '--scopes', 'workspaces:write', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    const { api_key: secret } = JSON.parse(run.stdout);

    const second = await startEmbedded(dataDir);
    const ws = await call(second.url, 'POST', '/v1/orgs/emb/workspaces', { name: 'from the CLI key' }, { key: secret });
    expect(ws.status, JSON.stringify(ws.body)).toBe(201);
    await second.app.stop();
  });
});
