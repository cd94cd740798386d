/**
 * Entry writes over REST against a server-mode gateway on real Postgres: one volume against the
 * same load spread over 8, and how far indexing trails a burst of auto-indexed writes.
 *
 *   npx tsx bench/writes.ts [--rounds 5] [--duration 5] [--burst 1000] [--db postgresql://postgres@127.0.0.1:5432/bench_pgv] [--prof DIR]
 *
 * Each round, in turn: (1) small JSON PUTs at 64 connections for `duration` s to one volume, (2) the
 * same spread round-robin over 8 volumes (both `manual`, so nothing is indexed; 512 paths per
 * volume, overwritten), (3) a burst of `burst` new entries into a fresh `manual` volume, (4) the
 * same into a fresh `auto` volume, then the time from its last acknowledged write until every entry
 * reports `is_indexed` (polling the REST listing). Needs `npm --prefix bench/peers install` and a
 * Postgres with pgvector (bench/README.md); `bench_writes` is dropped and created beside `--db`.
 * Writes the `## Writes` section of BENCHMARKS.md. Not part of the test suite.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ADMIN_KEY, Api, ORG } from './lib-gateway.js';
import { autocannonRun, fmt, fmtX, median, pairedRatio, rounds, send, throughput } from './lib-load.js';
import { arg, describeDatabase, freshDatabase, gatewayVersion, ROOT, startGateway, stopAll } from './lib-procs.js';
import { machine, writeSection } from './report.js';

const ROUNDS = Number(arg('rounds', '5'));
const SECONDS = Number(arg('duration', '5'));
const BURST = Number(arg('burst', '1000'));
const ADMIN_URL = arg('db', 'postgresql://postgres@127.0.0.1:5432/bench_pgv');
const GATEWAY_DIR = path.resolve(arg('gateway-dir', ROOT));
const CONNECTIONS = 64;

const body = (i: number) => JSON.stringify({ content: { n: i, title: `entry ${i}`, done: i % 2 === 0, tags: ['bench', 'write'] } });

async function main(): Promise<void> {
  const url = await freshDatabase(ADMIN_URL, 'bench_writes');
  const pgDb = await describeDatabase(url);
  try {
    // Background work as deployed (jobs poll every second), except the sweeper.
    const prof = arg('prof', '');
    const gw = await startGateway({
      dir: GATEWAY_DIR,
      adminKey: ADMIN_KEY,
      databaseUrl: url,
      env: { JOB_POLL_MS: '1000' },
      ...(prof ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${prof}`] } : {}),
    });
    const admin = new Api(gw.url, ADMIN_KEY);
    const ws = await admin.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'writes' });
    const base = `/v1/orgs/${ORG}/workspaces/${ws.workspace_id}/volumes`;
    const key = await admin.call('POST', `/v1/orgs/${ORG}/api-keys`, {
      name: 'bench-writer',
      scopes: ['workspaces:read', 'volumes:read', 'entries:read', 'entries:write'],
    });
    const api = new Api(gw.url, key.api_key);
    const headers = { authorization: `Bearer ${key.api_key}`, 'content-type': 'application/json' };
    const newVolume = async (name: string, mode: 'auto' | 'manual') =>
      (await admin.call('POST', base, { name, indexing_mode: mode })).volume.volume_id as string;
    const spread: string[] = [];
    for (let i = 0; i < 8; i++) spread.push(await newVolume(`spread-${i}`, 'manual'));

    // A PUT per request; `pathOf(k)` picks volume and path of the k-th request.
    let counter = 0;
    const puts = (pathOf: (k: number) => string) => [
      {
        method: 'PUT',
        setupRequest: (req: any) => {
          const k = counter++;
          return { ...req, path: pathOf(k), body: body(k) };
        },
      },
    ];
    const entryPath = (vol: string, p: string) => `${base}/${vol}/entries/${p}`;
    // Sanity: one write of each kind answers 2xx before any load.
    for (const vol of [spread[0]!, spread[7]!]) {
      const res = await send({ url: gw.url + entryPath(vol, 'warm/up.json'), method: 'PUT', headers, body: body(0) });
      if (res.status >= 300) throw new Error(`PUT: ${res.status} ${res.body.slice(0, 300)}`);
    }

    /** `BURST` new entries into `vol` at 64 connections: writes/s and the time the last one was acknowledged. */
    const burst = async (vol: string) => {
      const start = performance.now();
      const first = counter;
      const requests = puts((k) => entryPath(vol, `burst/e${String(k - first).padStart(5, '0')}.json`));
      const r = await autocannonRun({ url: gw.url, headers, connections: CONNECTIONS, amount: BURST, requests });
      const acked = performance.now();
      if (r['2xx'] !== BURST)
        throw new Error(`burst: ${r['2xx']} of ${BURST} writes acknowledged (${r.non2xx} non-2xx, ${r.errors} errors)`);
      return { rps: BURST / ((acked - start) / 1000), acked };
    };

    /** Polls the listing of `vol`'s /burst/ until every entry is indexed; ms after `since`. */
    const indexedAfter = async (vol: string, since: number) => {
      const pages: (string | undefined)[] = [undefined];
      const done = new Set<number>();
      for (;;) {
        let seen = 0;
        for (let p = 0; p < pages.length; p++) {
          if (done.has(p)) {
            seen += 200;
            continue;
          }
          const cursor = pages[p] ? `&cursor=${encodeURIComponent(pages[p]!)}` : '';
          const page = await api.call('GET', `${base}/${vol}/list?path=/burst/&limit=200${cursor}`);
          seen += page.entries.length;
          if (page.entries.every((e: any) => e.is_indexed)) done.add(p);
          if (page.entries.some((e: any) => e.index_error))
            throw new Error(`indexing failed: ${page.entries.find((e: any) => e.index_error).index_error}`);
          if (page.has_more && p === pages.length - 1) pages.push(page.next_cursor);
        }
        if (done.size === pages.length && seen >= BURST) return performance.now() - since;
        if (performance.now() - since > 600_000) throw new Error('indexing did not finish in 10 minutes');
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    const one: number[] = [];
    const eight: number[] = [];
    const manual: number[] = [];
    const auto: number[] = [];
    const lag: number[] = [];
    let errors = 0;
    process.stdout.write(`Measuring: ${ROUNDS} rounds, ${SECONDS} s per sample, bursts of ${BURST}…\n`);
    await rounds(ROUNDS, async (round) => {
      const target = { url: gw.url + entryPath(spread[0]!, 'x.json'), headers };
      const a = await throughput(
        target,
        CONNECTIONS,
        SECONDS,
        puts((k) => entryPath(spread[0]!, `load/p${k % 512}.json`)),
      );
      const b = await throughput(
        target,
        CONNECTIONS,
        SECONDS,
        puts((k) => entryPath(spread[k % 8]!, `load/p${Math.floor(k / 8) % 512}.json`)),
      );
      errors += a.errors + b.errors;
      one.push(a.rps);
      eight.push(b.rps);
      manual.push((await burst(await newVolume(`burst-manual-${round}`, 'manual'))).rps);
      const vol = await newVolume(`burst-auto-${round}`, 'auto');
      const r = await burst(vol);
      auto.push(r.rps);
      lag.push(await indexedAfter(vol, r.acked));
    });

    const spreadRatio = pairedRatio(one, eight);
    const lagS = median(lag) / 1000;
    const ok = (met: boolean) => (met ? 'met' : '**not met**');
    const date = new Date().toISOString().slice(0, 10);
    const lines = [
      `One run of \`npx tsx bench/writes.ts --rounds ${ROUNDS} --duration ${SECONDS} --burst ${BURST}\`, ${date}. Machine: ${machine()}.`,
      `Gateway in server mode on a fresh database \`bench_writes\` on **${pgDb}** (real Postgres, fsync on; every number here comes from it),`,
      `local blob store, org key with entries:write, small JSON entries (~100 B) by REST \`PUT …/entries/{path}\` at ${CONNECTIONS} keep-alive connections (autocannon 9).`,
      `Gateway: ${gatewayVersion(GATEWAY_DIR)}. ${ROUNDS} interleaved rounds; numbers are medians over rounds, ratios the median of per-round ratios.`,
      '',
      '| Target | Measured | Target | |',
      '|---|---:|---:|---|',
      `| Writes/s, one volume vs spread over 8 (${CONNECTIONS} conn, server mode) | ${fmtX(spreadRatio)} (${fmt(median(one))} vs ${fmt(median(eight))}) | ≥ 0.9× | ${ok(spreadRatio >= 0.9)} |`,
      `| Indexing lag after ${fmt(BURST)} auto-indexed writes (server mode) | ${lagS.toFixed(1)} s | ≤ 2 s | ${ok(lagS <= 2)} |`,
      '',
      '| Scenario | Writes/s (median) | Per round |',
      '|---|---:|---|',
      `| ${SECONDS} s at ${CONNECTIONS} conn, one volume (manual), 512 paths overwritten | ${fmt(median(one))} | ${one.map((x) => fmt(x)).join(', ')} |`,
      `| ${SECONDS} s at ${CONNECTIONS} conn, spread over 8 volumes (manual) | ${fmt(median(eight))} | ${eight.map((x) => fmt(x)).join(', ')} |`,
      `| Burst of ${fmt(BURST)} new entries, fresh manual volume | ${fmt(median(manual))} | ${manual.map((x) => fmt(x)).join(', ')} |`,
      `| Burst of ${fmt(BURST)} new entries, fresh auto volume | ${fmt(median(auto))} | ${auto.map((x) => fmt(x)).join(', ')} |`,
      `| Indexing lag after the auto burst (s) | ${lagS.toFixed(2)} | ${lag.map((x) => (x / 1000).toFixed(2)).join(', ')} |`,
      '',
      `Auto vs manual indexing, burst writes/s: ${fmtX(pairedRatio(auto, manual))}. Failed or non-2xx writes in the timed samples: ${errors}.`,
      'Indexing lag = from the last acknowledged write of the burst to the first moment the listing (`GET …/list?path=/burst/`, pages of 200,',
      're-reading only pages not yet fully indexed, every 50 ms) shows every entry `is_indexed`; hashing embedder `hash-1024`, default JOB_CONCURRENCY and JOB_POLL_MS.',
    ];
    await writeSection('Writes', lines.join('\n'));
  } finally {
    await stopAll();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
