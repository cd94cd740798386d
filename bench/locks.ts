/**
 * Lock throughput and latency over real HTTP against an embedded (PGlite) gateway.
 *
 *   npx tsx bench/locks.ts
 *
 * Boots a gateway on a fresh DATA_DIR in a temp folder (port 0), then measures:
 *   1. uncontended: ~500 sequential acquire+release pairs on one partition;
 *   2. contended: 16 contenders on one partition, each looping acquire (retrying at once on 409)
 *      → release, for a fixed number of pairs or until a time limit, whichever comes first.
 * Prints the numbers and writes (or replaces) the `## Locks` section of BENCHMARKS.md. Takes well
 * under a minute. Not part of the test suite.
 */
import { performance } from 'node:perf_hooks';
import { ADMIN_KEY, embeddedGateway } from './lib-gateway.js';
import { machine, ms, stats, writeSection } from './report.js';

const UNCONTENDED_PAIRS = 500;
const CONTENDERS = 16;
const PAIRS_PER_CONTENDER = 25;
const CONTENDED_TIME_LIMIT_MS = 20_000;

async function main(): Promise<void> {
  const bootStart = performance.now();
  const gateway = await embeddedGateway('locks');
  const { url } = gateway;
  const bootMs = performance.now() - bootStart;

  try {
    const call = async (method: string, route: string, body?: unknown) => {
      const res = await fetch(url + route, {
        method,
        headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const ws = await call('POST', '/v1/orgs/bench/workspaces', { name: 'bench' });
    if (ws.status !== 201) throw new Error(`workspace: ${JSON.stringify(ws.body)}`);
    const vol = await call('POST', `/v1/orgs/bench/workspaces/${ws.body.workspace_id}/volumes`, { name: 'locks' });
    if (vol.status !== 201) throw new Error(`volume: ${JSON.stringify(vol.body)}`);
    const locks = `/v1/orgs/bench/workspaces/${ws.body.workspace_id}/volumes/${vol.body.volume.volume_id}/locks`;

    const acquire = (partition: string, appId: string) => call('POST', locks, { partition, app_id: appId, ttl_seconds: 30 });
    const release = async (partition: string, lockId: string) => {
      const res = await call('DELETE', `${locks}/${partition}?lock_id=${lockId}`);
      if (res.status !== 200) throw new Error(`release: ${res.status} ${JSON.stringify(res.body)}`);
    };

    // Warm-up (JIT, connection, query plans), not measured.
    for (let i = 0; i < 30; i++) {
      const got = await acquire('warmup', 'bench');
      await release('warmup', got.body.lock.lock_id);
    }

    // 1. Uncontended.
    const soloLatency: number[] = [];
    const soloStart = performance.now();
    let lastToken = 0;
    for (let i = 0; i < UNCONTENDED_PAIRS; i++) {
      const t = performance.now();
      const got = await acquire('solo', 'bench');
      soloLatency.push(performance.now() - t);
      if (got.status !== 201) throw new Error(`uncontended acquire: ${got.status} ${JSON.stringify(got.body)}`);
      if (got.body.lock.fencing_token <= lastToken) throw new Error('fencing token did not increase');
      lastToken = got.body.lock.fencing_token;
      await release('solo', got.body.lock.lock_id);
    }
    const soloMs = performance.now() - soloStart;
    const solo = {
      pairs: UNCONTENDED_PAIRS,
      seconds: soloMs / 1000,
      perSecond: UNCONTENDED_PAIRS / (soloMs / 1000),
      ...stats(soloLatency),
    };

    // 2. Contended: 16 contenders, one partition.
    const attemptLatency: number[] = [];
    const waitLatency: number[] = [];
    let conflicts = 0;
    let pairs = 0;
    const deadline = performance.now() + CONTENDED_TIME_LIMIT_MS;
    const contender = async (n: number) => {
      for (let done = 0; done < PAIRS_PER_CONTENDER && performance.now() < deadline; ) {
        const waitStart = performance.now();
        for (;;) {
          if (performance.now() >= deadline) return;
          const t = performance.now();
          const got = await acquire('hot', `contender-${n}`);
          attemptLatency.push(performance.now() - t);
          if (got.status === 409) {
            conflicts++;
            continue;
          }
          if (got.status !== 201) throw new Error(`contended acquire: ${got.status} ${JSON.stringify(got.body)}`);
          waitLatency.push(performance.now() - waitStart);
          await release('hot', got.body.lock.lock_id);
          done++;
          pairs++;
          break;
        }
      }
    };
    const contendedStart = performance.now();
    await Promise.all(Array.from({ length: CONTENDERS }, (_, n) => contender(n)));
    const contendedMs = performance.now() - contendedStart;
    const attempts = attemptLatency.length;
    const contended = {
      pairs,
      seconds: contendedMs / 1000,
      perSecond: pairs / (contendedMs / 1000),
      attempts,
      conflicts,
      attempt: stats(attemptLatency),
      wait: stats(waitLatency),
      hitLimit: pairs < CONTENDERS * PAIRS_PER_CONTENDER,
    };

    const date = new Date().toISOString().slice(0, 10);

    const lines = [
      `Acquire + release pairs over real HTTP (keep-alive, \`fetch\`) against one gateway on **embedded PGlite** (fresh \`DATA_DIR\`, local blob store), ${date}.`,
      `Machine: ${machine()}. Gateway boot (initdb + migrations): ${(bootMs / 1000).toFixed(1)} s. Run: \`npx tsx bench/locks.ts\`.`,
      '',
      '| Scenario | Pairs | Time | Pairs/s | Acquire p50 | Acquire p99 | Acquire max |',
      '|---|---:|---:|---:|---:|---:|---:|',
      `| Uncontended (sequential, one partition) | ${solo.pairs} | ${solo.seconds.toFixed(2)} s | ${solo.perSecond.toFixed(0)} | ${ms(solo.p50)} | ${ms(solo.p99)} | ${ms(solo.max)} |`,
      `| ${CONTENDERS} contenders, one partition: each request | ${contended.pairs} | ${contended.seconds.toFixed(2)} s | ${contended.perSecond.toFixed(0)} | ${ms(contended.attempt.p50)} | ${ms(contended.attempt.p99)} | ${ms(contended.attempt.max)} |`,
      `| ${CONTENDERS} contenders: time to acquire (retries included) | | | | ${ms(contended.wait.p50)} | ${ms(contended.wait.p99)} | ${ms(contended.wait.max)} |`,
      '',
      `Contended: ${contended.attempts} acquire requests, ${contended.conflicts} of them 409 (${((100 * contended.conflicts) / Math.max(1, contended.attempts)).toFixed(0)} %); ` +
        `each contender retried at once on 409 (no backoff) and stopped after ${PAIRS_PER_CONTENDER} pairs or ${CONTENDED_TIME_LIMIT_MS / 1000} s` +
        `${contended.hitLimit ? ' (the time limit was reached)' : ''}. Uncontended, every acquisition's fencing token was checked to increase.`,
      'PGlite runs one query at a time, so these numbers are a floor for one embedded process; every acquisition is one',
      'transaction (counter upsert, conflict scan, insert) and every release one conditional update.',
    ];
    await writeSection('Locks', lines.join('\n'));
  } finally {
    await gateway.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
