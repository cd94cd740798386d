/**
 * What a VACUUM of `chunks` costs an embedded gateway, and what its requests see meanwhile: the
 * evidence behind the gateway's vacuum rules (src/domain/maintenance/vacuum.ts).
 *
 *   npx tsx bench/vacuum.ts [--chunks 20000] [--dims 1024]
 *
 * An embedded gateway (PGlite in its database thread), one volume filled with `chunks` one-chunk
 * entries (merged into the HNSW index), then rounds of churn, each followed by one VACUUM (ANALYZE)
 * of `chunks` while a client searches without pause:
 *   - new entries (1% of the volume): their fresh rows are merged into the index, which leaves dead
 *     row versions that were never in the HNSW graph;
 *   - overwrites of existing entries (0.5%, 1%, 5%): the old chunks were in the graph, so their
 *     nodes are dead there, and pgvector's VACUUM repairs every node that pointed at one.
 * Prints, for each round, the dead rows (Postgres' statistics), the VACUUM's time, the longest search
 * while it ran, and hybrid search p50 before and after. Writes the `## Vacuum (embedded)` section of
 * BENCHMARKS.md. Not part of the test suite.
 */
import { performance } from 'node:perf_hooks';
import { tableActivity } from '../src/domain/maintenance/vacuum.js';
import { HashingEmbedder } from '../src/indexing/embedders/hashing.js';
import { fillChunks, paragraph, pick, sentences } from './lib-corpus.js';
import { ADMIN_KEY, embeddedGateway } from './lib-gateway.js';
import { arg } from './lib-procs.js';
import { machine, ms, stats, writeSection } from './report.js';

const CHUNKS = Number(arg('chunks', '20000'));
const DIMS = Number(arg('dims', '1024'));

// Maintenance stays off (embeddedGateway): this script runs each VACUUM itself.
const gateway = await embeddedGateway('vacuum', { JOB_POLL_MS: '50' });
const { app, url } = gateway;
const prisma = app.database.prisma;
const call = async (method: string, route: string, body?: unknown) => {
  const res = await fetch(url + route, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const json = (await res.json()) as any;
  if (res.status >= 300) throw new Error(`${method} ${route}: ${res.status} ${JSON.stringify(json).slice(0, 300)}`);
  return json;
};
const settled = async (volumeId: string) => {
  while ((await prisma.entry.count({ where: { volumeId, isIndexed: false } })) > 0) await new Promise((r) => setTimeout(r, 100));
  while ((await prisma.chunk.count({ where: { fresh: true } })) > 0) await new Promise((r) => setTimeout(r, 100));
};

const lines: string[] = [];
try {
  const ws = (await call('POST', '/v1/orgs/bench/workspaces', { name: 'bench' })).workspace_id;
  const vols = `/v1/orgs/bench/workspaces/${ws}/volumes`;
  const model = `hash-${DIMS}`;
  const volumeId = (await call('POST', vols, { name: 'vacuum', embedding_model_id: model })).volume.volume_id;
  const search = (query: string) => call('POST', `${vols}/${volumeId}/search`, { query, mode: 'hybrid', top_k: 10 });
  const embedder = new HashingEmbedder(DIMS);
  const f0 = performance.now();
  for (let have = 0; have < CHUNKS; have += 500) {
    await fillChunks(prisma, { volumeId, model, embedder, from: have, count: Math.min(500, CHUNKS - have) });
  }
  process.stdout.write(`filled ${CHUNKS} chunks in ${((performance.now() - f0) / 1000).toFixed(0)} s\n`);
  await prisma.$executeRawUnsafe('VACUUM (ANALYZE)');
  const queries = Array.from({ length: 40 }, () => pick(sentences));
  const p50 = async () => {
    const times: number[] = [];
    for (const q of queries) {
      const t = performance.now();
      await search(q);
      times.push(performance.now() - t);
    }
    return stats(times).p50;
  };
  /** Writes `count` entries through batch writes: paths from `/bulk/<from>`, new texts. */
  const write = async (from: number, count: number) => {
    for (let i = 0; i < count; i += 50) {
      const n = Math.min(50, count - i);
      await call('POST', `${vols}/${volumeId}/batch`, {
        entries: Array.from({ length: n }, (_, j) => ({ path: `/bulk/${from + i + j}.md`, content_text: paragraph(3) })),
      });
    }
    await settled(volumeId);
  };
  const rounds: { name: string; churn: () => Promise<void> }[] = [
    { name: 'new entries, 1% (merged: dead rows outside the graph)', churn: () => write(CHUNKS, CHUNKS / 100) },
    { name: 'overwrites, 0.5% (dead graph nodes)', churn: () => write(0, CHUNKS / 200) },
    { name: 'overwrites, 1%', churn: () => write(CHUNKS / 200, CHUNKS / 100) },
    { name: 'overwrites, 5%', churn: () => write((3 * CHUNKS) / 200, CHUNKS / 20) },
  ];
  const table = [
    '| Churn before the VACUUM | Dead chunk rows | Live | VACUUM (ANALYZE) chunks | Longest search meanwhile | Searches answered meanwhile | Hybrid p50 before / after |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const round of rounds) {
    await round.churn();
    const chunks = (await tableActivity(app.runtime)).find((t) => t.table === 'chunks');
    const before = await p50();
    // A client searching without pause while the VACUUM runs.
    let vacuuming = true;
    const during: number[] = [];
    const prober = (async () => {
      while (vacuuming) {
        const t = performance.now();
        await search(pick(queries));
        during.push(performance.now() - t);
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await prisma.$executeRawUnsafe('VACUUM (ANALYZE) chunks');
    const seconds = (performance.now() - t0) / 1000;
    vacuuming = false;
    await prober;
    const after = await p50();
    const row = `| ${round.name} | ${chunks?.dead ?? '?'} | ${chunks?.live ?? '?'} | ${seconds.toFixed(2)} s | ${ms(Math.max(...during))} | ${during.length} | ${ms(before)} / ${ms(after)} |`;
    process.stdout.write(`${row}\n`);
    table.push(row);
  }
  lines.push(
    `Embedded gateway (PGlite in its database thread), hashing embedder \`${model}\`, ${new Date().toISOString().slice(0, 10)}. ${machine()}.`,
    `Run: \`npx tsx bench/vacuum.ts --chunks ${CHUNKS} --dims ${DIMS}\`. One volume of ${CHUNKS.toLocaleString('en-US')} one-chunk entries in the HNSW index, then rounds of churn by batch writes (indexed, merged), each followed by \`VACUUM (ANALYZE) chunks\` while one client searches (hybrid, top 10) without pause; dead and live rows from \`pg_stat_user_tables\`.`,
    '',
    ...table,
    '',
    'The longest search while a VACUUM ran is that VACUUM: the embedded database answers nothing else meanwhile. Dead rows that were never in the HNSW graph (merged fresh versions) cost little; dead graph nodes cost seconds each time, growing slower than their number (pgvector repairs each node that pointed at a dead one, and neighbours are shared). This is why the gateway vacuums `chunks` early only while no request is about (src/domain/maintenance/vacuum.ts, README "Vacuuming").',
  );
  await writeSection('Vacuum (embedded)', lines.join('\n'));
} finally {
  await gateway.stop();
}
