/**
 * Start-up of the built gateway (`node dist/main.js`, what `npm start` runs): time from spawn to the
 * first `/readyz` 200, on a fresh data dir / database and on a restart of the same one, embedded
 * and (with --db) server mode, and the process's RSS once idle after start.
 *
 *   npm run build && npx tsx bench/startup.ts [--runs 5] [--db postgresql://postgres@127.0.0.1:5432/postgres]
 *
 * Server mode creates and drops databases `bench_startup_<n>` through --db (needs pgvector there).
 * Writes the `## Start-up` section of BENCHMARKS.md. Not part of the test suite.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { machine, stats, writeSection } from './report.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const RUNS = Number(arg('runs', '5'));
const ADMIN_DB = process.argv.includes('--db') ? arg('db', '') : undefined;
const MAIN = path.resolve(import.meta.dirname, '..', 'dist', 'main.js');

interface Start {
  readyMs: number;
  rssMiB: number;
}

/** Spawns the built gateway, polls /readyz until 200, reads its RSS after a second idle, stops it. */
async function startOnce(env: Record<string, string>): Promise<Start> {
  const t0 = performance.now();
  const child: ChildProcess = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: os.homedir(),
      NODE_ENV: 'production',
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  try {
    let url: string | undefined;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`gateway exited: ${out}`);
      url ??= /listening on (http:\/\/\S+)/.exec(out)?.[1];
      if (url) {
        const res = await fetch(`${url}/readyz`).catch(() => undefined);
        if (res?.status === 200) break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const readyMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 1000));
    const status = await fs.readFile(`/proc/${child.pid}/status`, 'utf8');
    const rssMiB = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
    return { readyMs, rssMiB };
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

async function main(): Promise<void> {
  await fs.access(MAIN).catch(() => {
    throw new Error('dist/main.js is missing: run `npm run build` first');
  });
  const rows: string[] = [];
  const row = (label: string, xs: Start[]) => {
    const r = stats(xs.map((x) => x.readyMs));
    const m = stats(xs.map((x) => x.rssMiB));
    rows.push(
      `| ${label} | ${(r.p50 / 1000).toFixed(2)} s | ${xs.map((x) => (x.readyMs / 1000).toFixed(2)).join(', ')} | ${m.p50.toFixed(0)} MiB |`,
    );
    process.stdout.write(`${rows.at(-1)}\n`);
  };

  const fresh: Start[] = [];
  const restart: Start[] = [];
  for (let i = 0; i < RUNS; i++) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-bench-start-'));
    try {
      fresh.push(await startOnce({ DATA_DIR: dir }));
      restart.push(await startOnce({ DATA_DIR: dir }));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
  row('Embedded, fresh data dir (initdb, migrations, first key)', fresh);
  row('Embedded, restart of the same data dir', restart);

  if (ADMIN_DB) {
    const admin = new pg.Client({ connectionString: ADMIN_DB });
    await admin.connect();
    const sFresh: Start[] = [];
    const sRestart: Start[] = [];
    try {
      for (let i = 0; i < RUNS; i++) {
        const name = `bench_startup_${i}`;
        await admin.query(`DROP DATABASE IF EXISTS ${name}`);
        await admin.query(`CREATE DATABASE ${name}`);
        const url = new URL(ADMIN_DB);
        url.pathname = `/${name}`;
        const env = { DATABASE_URL: url.toString(), ADMIN_API_KEY: 'bench-startup-key-0123456789' };
        sFresh.push(await startOnce(env));
        sRestart.push(await startOnce(env));
        await admin.query(`DROP DATABASE ${name}`);
      }
    } finally {
      await admin.end();
    }
    row('Server mode, fresh database (migrations)', sFresh);
    row('Server mode, restart', sRestart);
  }

  // What a start costs before any database work: loading the module graph.
  const imports: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await new Promise<void>((resolve, reject) => {
      const p = spawn(
        process.execPath,
        ['--input-type=module', '-e', `await import(${JSON.stringify(path.join(path.dirname(MAIN), 'app.js'))})`],
        {
          stdio: 'ignore',
        },
      );
      p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`import exited ${code}`))));
    });
    imports.push(performance.now() - t);
  }
  const importS = (stats(imports).p50 / 1000).toFixed(2);
  process.stdout.write(`import of dist/app.js alone: ${importS} s\n`);

  const lines = [
    `\`node dist/main.js\` (what \`npm start\` runs), spawn to first \`/readyz\` 200, ${RUNS} runs each, ${new Date().toISOString().slice(0, 10)}; RSS of the whole process one second after ready.`,
    `Machine: ${machine()}. Run: \`npm run build && npx tsx bench/startup.ts --runs ${RUNS}${ADMIN_DB ? ' --db …' : ''}\`${ADMIN_DB ? ' (server mode on PostgreSQL 15 + pgvector 0.8.1 built here)' : ''}.`,
    '',
    '| Start | Median to ready | Runs | RSS idle (median) |',
    '|---|---:|---|---:|',
    ...rows,
    '',
    `Loading the module graph alone (\`node -e "await import('dist/app.js')"\`, median of ${RUNS}) takes ${importS} s: most of a server-mode start. Embedded mode adds its database thread (PGlite's WASM and extensions, then initdb and the migrations on a fresh data dir).`,
  ];
  await writeSection('Start-up', lines.join('\n'));
}

await main();
