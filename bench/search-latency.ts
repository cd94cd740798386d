/**
 * Search latency over HTTP against a database `bench/search.ts --pg` already filled (its `bench_search`
 * database and `scale` volume), warm: a gateway in this process on that database, every query sent
 * once in every mode untimed, then `--rounds` timed rounds with the modes interleaved query by query
 * (hybrid, semantic, keyword for one query, then the next), so no mode runs on a cache the others
 * warmed or cooled. bench/search.ts times each mode in turn right after its bulk load and index
 * builds, the first mode on a cold cache; this measures the same searches in steady state.
 *
 *   npx tsx bench/search-latency.ts --pg postgresql://postgres@127.0.0.1:5432/bench_search [--queries 30] [--rounds 3]
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

async function main(): Promise<void> {
  if (!PG) throw new Error('--pg <url of the bench_search database> is required');
  const gateway = await embeddedGateway('search-latency', { DATABASE_URL: PG, SEARCH_EF_SEARCH: '200' });
  try {
    const prisma = gateway.app.database.prisma;
    const [scale] = await prisma.$queryRaw<{ id: string; workspace_id: string; chunks: number }[]>`
      SELECT v.id, v.workspace_id, (SELECT count(*)::int FROM chunks c WHERE c.volume_id = v.id) AS chunks
      FROM volumes v WHERE v.name = 'scale' AND v.deleted_at IS NULL`;
    if (!scale) throw new Error('no `scale` volume: fill the database with bench/search.ts --pg first');
    const route = `/v1/orgs/bench/workspaces/${scale.workspace_id}/volumes/${scale.id}/search`;
    const search = async (query: string, mode: string) => {
      const res = await fetch(gateway.url + route, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query, mode, top_k: 10 }),
      });
      if (res.status !== 200) throw new Error(`${mode} ${query}: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    };
    // Drawn as bench/search.ts draws them: half corpus paraphrases, half sentences.
    const queries = Array.from({ length: QUERIES }, (_, i) => (i % 2 ? pick(corpus.queries).query : pick(sentences)));
    for (const q of queries) for (const mode of MODES) await search(q, mode);
    const times: Record<string, number[]> = { hybrid: [], semantic: [], keyword: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const q of queries) {
        for (const mode of MODES) {
          const t = performance.now();
          await search(q, mode);
          times[mode]?.push(performance.now() - t);
        }
      }
    }
    const row = MODES.map((m) => {
      const s = stats(times[m] as number[]);
      return `${ms(s.p50)} | ${ms(s.p95)}`;
    });
    const ranking = await keywordRanking(gateway.app.runtime);
    const line = `| ${scale.chunks.toLocaleString('en')} | ${row.join(' | ')} |`;
    process.stdout.write(`${line}\n`);
    await writeSection(
      'Search latency, warm (server mode)',
      [
        `${await describeDatabase(PG)}, the database \`bench/search.ts --pg\` left (its \`scale\` volume), keyword ranking \`${ranking}\`, HNSW \`ef_search\` 200, ${new Date().toISOString().slice(0, 10)}.`,
        `Machine: ${machine()}. Run: \`npx tsx bench/search-latency.ts --pg <that database> --queries ${QUERIES} --rounds ${ROUNDS}\`.`,
        '',
        `Over HTTP, top_k 10, ${QUERIES} queries (drawn as bench/search.ts draws them) sent once in each mode untimed, then ${ROUNDS} timed rounds with the modes interleaved query by query (${QUERIES * ROUNDS} searches a mode):`,
        '',
        '| Chunks | Hybrid p50 | Hybrid p95 | Semantic p50 | Semantic p95 | Keyword p50 | Keyword p95 |',
        '|---:|---:|---:|---:|---:|---:|---:|',
        line,
      ].join('\n'),
    );
  } finally {
    await gateway.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
