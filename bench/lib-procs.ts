import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

// Child servers for the benchmarks (the gateway through its process entry point, PostGraphile, the
// hand-written SQL servers), and the databases they run on. Every child is stopped by stopAll()
// (called from the scripts' finally blocks) or, at the latest, killed when this process exits.

export const ROOT = path.resolve(import.meta.dirname, '..');
export const PEERS = path.join(ROOT, 'bench', 'peers');

export interface Server {
  name: string;
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

const running = new Set<Server>();
const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const s of running) s.child.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // tsx forwards the terminal's signal once more: the second one must not skip the cleanup.
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    void stopAll().finally(() => process.exit(130));
  });
}

/** Spawns a server and resolves once it prints "listening on http://…" (its URL). */
export function startServer(
  name: string,
  args: string[],
  opts: { env: Record<string, string>; cwd?: string; timeoutMs?: number },
): Promise<Server> {
  const child = spawn(process.execPath, args, { cwd: opts.cwd ?? ROOT, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const server: Server = {
    name,
    url: '',
    child,
    async stop() {
      running.delete(server);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(server);
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      void server.stop();
      reject(new Error(`${name} ${why}:\n${output.slice(-3000)}`));
    };
    const timer = setTimeout(() => fail('did not start in time'), opts.timeoutMs ?? 120_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(output);
      if (m && !server.url) {
        server.url = m[1]!;
        clearTimeout(timer);
        resolve(server);
      }
      if (output.length > 100_000) output = output.slice(-20_000);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!server.url) fail(`exited (${code ?? signal}) before listening`);
    });
  });
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/** The gateway, started as `node --import tsx src/main.ts` in `dir` (server mode with a database URL, embedded otherwise). */
export async function startGateway(opts: {
  dir: string;
  adminKey: string;
  databaseUrl?: string;
  env?: Record<string, string>;
  /** Extra node flags, e.g. `--cpu-prof` (not allowed in NODE_OPTIONS). */
  nodeArgs?: string[];
}): Promise<Server & { dataDir: string }> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-bench-'));
  tempDirs.add(dataDir);
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir() };
  Object.assign(env, {
    NODE_ENV: 'production',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ADMIN_API_KEY: opts.adminKey,
    DATA_DIR: dataDir,
    // No background work in the middle of a measurement: jobs this process queues still start at once.
    JOB_POLL_MS: '600000',
    SWEEP_INTERVAL_MS: '600000',
    GRAPHQL_MAX_COST: '10000000',
    // A load generator is one key far past any per-key budget: the limiter stays on (its counter is
    // part of every request's cost) with a budget it never reaches.
    RATE_LIMIT_REQUESTS: '1000000000',
    ...(opts.databaseUrl ? { DATABASE_URL: opts.databaseUrl } : {}),
    ...opts.env,
  });
  const name = opts.databaseUrl ? 'gateway (server mode)' : 'gateway (embedded)';
  try {
    const server = await startServer(name, [...(opts.nodeArgs ?? []), '--import', 'tsx', 'src/main.ts'], { env, cwd: opts.dir });
    const stop = server.stop;
    return Object.assign(server, {
      dataDir,
      stop: async () => {
        await stop();
        await fs.rm(dataDir, { recursive: true, force: true });
        tempDirs.delete(dataDir);
      },
    });
  } catch (err) {
    await fs.rm(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** DROP + CREATE `name` on the server of `adminUrl`, with pgvector; returns its URL. */
export async function freshDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS vector');
  } finally {
    await db.end();
  }
  return url.toString();
}

/** "PostgreSQL 15.20 + pgvector 0.8.6" for the database at `url`. */
export async function describeDatabase(url: string): Promise<string> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const { rows } = await db.query(
      `SELECT current_setting('server_version') AS v, (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vec`,
    );
    return `PostgreSQL ${String(rows[0].v).split(' ')[0]} + pgvector ${rows[0].vec ?? '(none)'}`;
  } finally {
    await db.end();
  }
}

/** Which gateway code ran: commit (+ "with uncommitted changes") of `dir`, or its `.bench-commit` file for a snapshot. */
export function gatewayVersion(dir: string): string {
  try {
    const git = (...a: string[]) =>
      execFileSync('git', ['-C', dir, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const top = git('rev-parse', '--show-toplevel');
    if (path.resolve(top) === path.resolve(dir)) {
      const dirty = git('status', '--porcelain', '--', 'src', 'prisma', 'package.json') !== '';
      return `commit ${git('rev-parse', '--short', 'HEAD')}${dirty ? ' with uncommitted changes in src/' : ''}`;
    }
  } catch {}
  try {
    return `commit ${readFileSync(path.join(dir, '.bench-commit'), 'utf8').trim().slice(0, 7)} (snapshot in ${dir})`;
  } catch {
    return dir;
  }
}

export const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
