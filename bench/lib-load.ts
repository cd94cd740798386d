import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PEERS } from './lib-procs.js';
import { stats } from './report.js';

// Load generation for the benchmarks: autocannon (from bench/peers, never a gateway dependency) for
// throughput at N connections, a sequential keep-alive client for latency at one connection, and
// the medians / paired ratios the reports print.

export interface Req {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

let cannon: any;
function autocannon(): any {
  if (!cannon) {
    try {
      cannon = createRequire(path.join(PEERS, 'package.json'))('autocannon');
    } catch {
      throw new Error('autocannon is missing: run `npm --prefix bench/peers install` first (see bench/README.md)');
    }
  }
  return cannon;
}

/** autocannon itself, for runs the helpers below do not cover (e.g. a fixed `amount` of requests). */
export function autocannonRun(opts: Record<string, unknown>): Promise<any> {
  return autocannon()({ timeout: 30, ...opts });
}

export interface Throughput {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

/** Requests/s answered 2xx over `seconds` at `connections` concurrent keep-alive connections (autocannon). */
export async function throughput(
  req: Req,
  connections: number,
  seconds: number,
  requests?: { setupRequest: (r: any) => any }[],
): Promise<Throughput> {
  const result = await autocannon()({
    url: req.url,
    method: req.method ?? 'GET',
    headers: req.headers,
    body: req.body,
    connections,
    duration: seconds,
    requests,
    timeout: 30,
  });
  const ok = result['2xx'] as number;
  const errors = (result.non2xx as number) + (result.errors as number) + (result.timeouts as number);
  return { rps: ok / (result.duration as number), p50: result.latency.p50, p99: result.latency.p99, errors };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One request over a keep-alive connection; resolves with status and body. */
export function send(req: Req): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request(req.url, { method: req.method ?? 'GET', headers: req.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(req.body);
  });
}

/** Sequential requests (one connection) for `seconds` (at least `min`): latency percentiles in ms. */
export async function latency(req: Req, seconds: number, min = 50): Promise<{ p50: number; p99: number; n: number }> {
  const samples: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end || samples.length < min) {
    const t = performance.now();
    const res = await send(req);
    samples.push(performance.now() - t);
    if (res.status !== 200) throw new Error(`${req.url}: ${res.status} ${res.body.slice(0, 300)}`);
  }
  const s = stats(samples);
  return { p50: s.p50, p99: s.p99, n: samples.length };
}

export const median = (xs: number[]): number => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The median of per-round ratios a[i]/b[i] (paired, so a slow phase of the shared machine cancels out). */
export const pairedRatio = (a: number[], b: number[]): number => median(a.map((x, i) => x / b[i]!));

export const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a';
export const fmtMs = (n: number): string => (Number.isFinite(n) ? `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms` : 'n/a');
export const fmtX = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}×` : 'n/a');

/** Runs `round()` `rounds` times, logging progress; the scripts interleave their servers inside one round. */
export async function rounds(count: number, round: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await round(i);
    process.stdout.write(`  round ${i + 1}/${count} done in ${((performance.now() - t) / 1000).toFixed(0)} s\n`);
  }
}
