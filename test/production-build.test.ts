import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Child, spawnChild } from './helpers/child.js';
import { call } from './helpers/http.js';

/**
 * What `npm start` runs in production: `npm run build` compiles src/ to dist/, and `node
 * dist/main.js` runs it without tsx, from any working directory, reading `.env` there (the
 * environment wins over the file). dependency-cruiser separately keeps src/ off devDependencies,
 * so the same output runs after `npm ci --omit=dev`.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const BOOT_TIMEOUT = 90_000;
const children = new Set<Child>();
let work: string;

beforeAll(async () => {
  await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT });
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-prod-'));
}, 180_000);
afterAll(async () => {
  for (const c of children) await c.kill();
  await fs.rm(work, { recursive: true, force: true });
});

function startBuilt(cwd: string, extraEnv: Record<string, string>): Child {
  // Nothing from the test runner: what a service manager would pass.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? os.tmpdir(),
    TMPDIR: os.tmpdir(),
    ...extraEnv,
  };
  return spawnChild(process.execPath, [path.join(ROOT, 'dist/main.js')], { cwd, env }, children);
}

it(
  'dist/main.js runs from another directory, reads .env there, and environment variables win over it',
  async () => {
    const dataFromFile = path.join(work, 'data-from-file');
    const fileKey = 'file-key-0123456789abcdef';
    const envKey = 'env-key-0123456789abcdef';
    await fs.writeFile(
      path.join(work, '.env'),
      [
        '# as copied from .env.example and edited',
        `DATA_DIR=${dataFromFile}`,
        'PORT=0',
        'HOST=127.0.0.1',
        'LOG_LEVEL=info',
        'NODE_ENV=production',
        `ADMIN_API_KEY=${fileKey}`,
      ].join('\n'),
    );
    const child = startBuilt(work, { ADMIN_API_KEY: envKey });
    const [, url] = (await child.waitForStdout(/listening on (http:\/\/[^\s]+)\n/, BOOT_TIMEOUT)) as string[];
    await child.waitForStdout(/Config {4}.*\n/, 5_000);
    expect(child.stdout()).toContain(`Config    ${path.join(work, '.env')} (environment variables take precedence)`);
    // From the file: the data dir. From the environment, over the file's: the admin key.
    expect(child.stdout()).toContain(`embedded PGlite in ${dataFromFile}`);
    await fs.access(path.join(dataFromFile, 'pgdata'));
    // The banner's facts as a log line too (for collectors), without the admin key.
    const listening = await child.waitForStdout(/^\{.*"msg":"listening".*\}$/m, 5_000);
    expect(JSON.parse(listening[0])).toMatchObject({ url, database: 'embedded', envFile: path.join(work, '.env') });
    expect(listening[0]).not.toContain(envKey);
    expect((await call(url as string, 'GET', '/readyz', undefined, { key: null })).status).toBe(200);
    expect((await call(url as string, 'POST', '/v1/orgs/prod/workspaces', { name: 'w' }, { key: envKey })).status).toBe(201);
    expect((await call(url as string, 'GET', '/v1/orgs/prod/workspaces', undefined, { key: fileKey })).status).toBe(401);
    child.proc.kill('SIGTERM');
    expect(await child.exited).toBe(0);
  },
  BOOT_TIMEOUT + 30_000,
);

it('an ENV_FILE that does not exist stops the start with a configuration error (exit 78)', async () => {
  const child = startBuilt(work, { ENV_FILE: 'missing.env', DATA_DIR: path.join(work, 'unused') });
  expect(await child.exited).toBe(78);
  expect(child.stderr()).toContain(`ENV_FILE ${path.join(work, 'missing.env')} does not exist`);
});
