/**
 * Search latency over HTTP against a database `bench/search.ts --pg` already filled (its `bench_search`
 * database and `scale` volume), warm: a gateway in this process on that database, every query sent
 * once in every mode untimed, then `--rounds` timed rounds with the modes interleaved query by query
 * (hybrid, semantic, keyword for one query, then the next), so no mode runs on a cache the others
 * warmed or cooled. bench/search.ts times each mode in turn right after its bulk load and index
 * builds, the first mode on a cold cache; this measures the same searches in steady state.
 *
 *   npx tsx bench/search-latency.ts --pg postgresql://postgres@127.0.0.1:5432/bench_search [--queries 30] [--rounds 3] [--compare KEY=VALUE]
 *
 * Writes the `## Search latency, warm (server mode)` section of BENCHMARKS.md.
 */
import { performance } from 'node:perf_hooks';
import { keywordRanking } from '../src/domain/search/sql.js';
import { corpus, pick, sentences } from './lib-corpus.js';
import { ADMIN_KEY, embeddedGateway } from './lib-gateway.js';
import { describeDatabase } from './lib-procs.js';
import { machine, ms, stats, writeSection } from './report.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const PG = arg('pg', '');
const QUERIES = Number(arg('queries', '30'));
const ROUNDS = Number(arg('rounds', '3'));
const MODES = ['hybrid', 'semantic', 'keyword'] as const;

/**
 * `--compare KEY=VALUE[,KEY=VALUE]`: a second gateway on the same database with these settings, timed
 * in the same rounds (the two gateways alternate query by query, the first to go swapping each round).
 */
const COMPARE = arg('compare', '');
const compareEnv = Object.fromEntries(COMPARE ? COMPARE.split(',').map((kv) => kv.split('=') as [string, string]) : []);

async function main(): Promise<void> {
  if (!PG) throw new Error('--pg <url of the bench_search database> is required');
  const base = { DATABASE_URL: PG, SEARCH_EF_SEARCH: '200' };
  const gateways = [{ label: 'defaults', gateway: await embeddedGateway('search-latency', base) }];
  if (COMPARE) gateways.push({ label: COMPARE, gateway: await embeddedGateway('search-latency-b', { ...base, ...compareEnv }) });
  const first = gateways[0]!.gateway;
  try {
    const prisma = first.app.database.prisma;
    const [scale] = await prisma.$queryRaw<{ id: string; workspace_id: string; chunks: number }[]>`
      SELECT v.id, v.workspace_id, (SELECT count(*)::int FROM chunks c WHERE c.volume_id = v.id) AS chunks
      FROM volumes v WHERE v.name = 'scale' AND v.deleted_at IS NULL`;
    if (!scale) throw new Error('no `scale` volume: fill the database with bench/search.ts --pg first');
    const route = `/v1/orgs/bench/workspaces/${scale.workspace_id}/volumes/${scale.id}/search`;
    const search = async (url: string, query: string, mode: string) => {
      const res = await fetch(url + route, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query, mode, top_k: 10 }),
      });
      if (res.status !== 200) throw new Error(`${mode} ${query}: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { results: { path: string; chunk_index: number }[] }).results;
    };
    // Drawn as bench/search.ts draws them: half corpus paraphrases, half sentences.
    const queries = Array.from({ length: QUERIES }, (_, i) => (i % 2 ? pick(corpus.queries).query : pick(sentences)));
    let differing = 0;
    for (const q of queries)
      for (const mode of MODES) {
        const answers: string[] = [];
        for (const g of gateways) answers.push(JSON.stringify(await search(g.gateway.url, q, mode)));
        if (answers.some((a) => a !== answers[0])) differing++;
      }
    const times = gateways.map(() => ({ hybrid: [] as number[], semantic: [] as number[], keyword: [] as number[] }));
    for (let r = 0; r < ROUNDS; r++) {
      for (const q of queries) {
        for (const mode of MODES) {
          for (let j = 0; j < gateways.length; j++) {
            const i = (j + r) % gateways.length;
            const t = performance.now();
            await search(gateways[i]!.gateway.url, q, mode);
            times[i]![mode].push(performance.now() - t);
          }
        }
      }
    }
    const ranking = await keywordRanking(first.app.runtime);
    const lines = gateways.map((g, i) => {
      const row = MODES.map((m) => {
        const st = stats(times[i]![m]);
        return `${ms(st.p50)} | ${ms(st.p95)}`;
      });
      return `| ${scale.chunks.toLocaleString('en')} | ${g.label} | ${row.join(' | ')} |`;
    });
    process.stdout.write(`${lines.join('\n')}\n`);
    const compared =
      gateways.length > 1
        ? [
            '',
            `The second gateway differs only in \`${COMPARE}\`. Ratio of its medians to the defaults': ${MODES.map((m) => {
              const a = stats(times[0]![m]);
              const b = stats(times[1]![m]);
              return `${m} p50 ${(b.p50 / a.p50).toFixed(2)}×, p95 ${(b.p95 / a.p95).toFixed(2)}×`;
            }).join('; ')}. Answers that differed between the two (untimed pass, ${QUERIES * MODES.length} searches): ${differing}.`,
          ]
        : [];
    await writeSection(
      'Search latency, warm (server mode)',
      [
        `${await describeDatabase(PG)}, the database \`bench/search.ts --pg\` left (its \`scale\` volume), keyword ranking \`${ranking}\`, HNSW \`ef_search\` 200, ${new Date().toISOString().slice(0, 10)}.`,
        `Machine: ${machine()}. Run: \`npx tsx bench/search-latency.ts --pg <that database> --queries ${QUERIES} --rounds ${ROUNDS}${COMPARE ? ` --compare ${COMPARE}` : ''}\`.`,
        '',
        `Over HTTP, top_k 10, ${QUERIES} queries (drawn as bench/search.ts draws them) sent once in each mode untimed, then ${ROUNDS} timed rounds with the modes interleaved query by query (${QUERIES * ROUNDS} searches a mode${gateways.length > 1 ? ' and gateway; the gateways alternate, the first to go swapping each round' : ''}):`,
        '',
        '| Chunks | Gateway | Hybrid p50 | Hybrid p95 | Semantic p50 | Semantic p95 | Keyword p50 | Keyword p95 |',
        '|---:|---|---:|---:|---:|---:|---:|---:|',
        ...lines,
        ...compared,
      ].join('\n'),
    );
  } finally {
    for (const g of gateways) await g.gateway.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
