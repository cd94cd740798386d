/**
 * Indexing throughput, search latency and HNSW recall against an embedded (PGlite) gateway.
 *
 *   npx tsx bench/search.ts [--dims 1024] [--sizes 10000,100000] [--queries 100]
 *   npx tsx bench/search.ts --pg postgresql://postgres@127.0.0.1:5432/postgres --sizes 10000,100000,1000000 [--no-overfetch]
 *
 * `--pg` runs it in server mode: a fresh database `bench_search` on that server (it needs pgvector),
 * the gateway in this process over DATABASE_URL, and the scale fill as a bulk load (the chunks'
 * search indexes dropped before each step and built after it), so 1M chunks take minutes. It writes
 * `## Search (server mode)` instead of `## Search`.
 *
 * 1. Indexing: 1 000 text entries (~3 chunks each) written to a manual-mode volume over HTTP, then
 *    one reindex job: chunks/s through the whole pipeline (chunking, hashing embedder, chunk rows
 *    with their vector and full-text columns, HNSW and GIN maintenance); then the same 1 000 entries
 *    written to an auto-mode volume: chunks/s from the first write to every entry searchable; then
 *    the same through batch writes (50 entries a request).
 *    `--indexing-only` stops after this part and prints it without touching BENCHMARKS.md;
 *    `--fresh-chunks 0` turns the fresh tier off (SEARCH_FRESH_CHUNKS) for a before/after.
 * 2. Scale: a second volume filled straight through SQL (the same rows the pipeline writes, built
 *    in bulk so 100k chunks take minutes, not hours) to each size, then 100 queries per mode over
 *    HTTP (one untimed pass, then the modes interleaved): p50/p95 for hybrid, keyword and semantic.
 * 3. Recall: for 100 queries, the HNSW top 10 (SEARCH_EF_SEARCH, iterative scans) against an exact
 *    scan's top 10, and the served hybrid top 10 against the same hybrid with an exact
 *    nearest-neighbour leg. The corpus repeats its sentences, so many chunks score exactly alike: a
 *    hit counts as found when it is in the exact top 10 or scores as well as its 10th (ties
 *    counted); the strict count (the exact top 10's own ids, ties broken by path) is printed beside it.
 * 4. With `--reindex-scale`: one reindex job over the largest volume, timed to its end (every chunk
 *    embedded and written again), then until the fresh tier is merged.
 * Writes the `## Search` section of BENCHMARKS.md. Not part of the test suite.
 */
import { performance } from 'node:perf_hooks';
import type { Db } from '../src/db/client.js';
import { vacuumWhereDue } from '../src/domain/maintenance/vacuum.js';
import { forgetLexemeStats, sparseQuery, typicalChunkWords } from '../src/domain/search/bm25-sparse.js';
import { HYBRID_DEPTH } from '../src/domain/search/search.js';
import {
  type Candidate,
  fuse,
  keywordRanking,
  rankedList,
  type SearchRow,
  searchSql,
  semanticSql,
  sparseBm25Sql,
  useHnsw,
  useSearchPlans,
} from '../src/domain/search/sql.js';
import type { KeywordRanking } from '../src/domain/shared/runtime.js';
import { Prisma } from '../src/generated/prisma/client.js';
import { HashingEmbedder } from '../src/indexing/embedders/hashing.js';
import { STATIC_DIMS, STATIC_EMBEDDER_ID } from '../src/indexing/embedders/static.js';
import { corpus, fillChunks, paragraph, pick, sentences } from './lib-corpus.js';
import { ADMIN_KEY, embeddedGateway } from './lib-gateway.js';
import { describeDatabase, freshDatabase } from './lib-procs.js';
import { machine, ms, stats, writeSection } from './report.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const DIMS = Number(arg('dims', '1024'));
const SIZES = arg('sizes', '10000,100000').split(',').map(Number);
const EF_SEARCH = Number(arg('ef', '200'));
const QUERIES = Number(arg('queries', '100'));
/** Server mode: the Postgres server (an admin URL) on which a fresh database `bench_search` is made. */
const PG = arg('pg', '');
/** `--no-overfetch` skips the sweep of hybrid shapes (HYBRID_SHAPES: more hybrid statements per query and size). */
const OVERFETCH = !process.argv.includes('--no-overfetch');
/** The served shape first: fusion depth, HNSW candidate list, HNSW over-fetch factor. */
const HYBRID_SHAPES = [
  { depth: HYBRID_DEPTH, ef: EF_SEARCH, f: 1 },
  { depth: 30, ef: EF_SEARCH, f: 1 },
  { depth: 20, ef: EF_SEARCH, f: 1 },
  { depth: HYBRID_DEPTH, ef: 100, f: 1 },
  { depth: 30, ef: 100, f: 1 },
  { depth: HYBRID_DEPTH, ef: EF_SEARCH, f: 2 },
];
const INDEXING_ONLY = process.argv.includes('--indexing-only');
/** `--reindex-scale`: after the searches, time one reindex job over the largest volume (section 4). */
const REINDEX_SCALE = process.argv.includes('--reindex-scale');
const EF_SWEEP = [...new Set([40, 100, 200, 400, EF_SEARCH])].sort((a, b) => a - b);

const KEYWORD_RANKINGS: Record<KeywordRanking, string> = {
  bm25: 'BM25 (pg_textsearch, top-k by Block-Max WAND)',
  bm25_sparsevec: 'BM25 as pgvector sparse vectors (top-k by their HNSW index; IDF from the planner statistics)',
  ts_rank_cd: 'ts_rank_cd (every match ranked)',
};

/** An exact top 10: its keys, and the score a hit must reach to tie with its 10th. */
interface Truth {
  keys: Set<string>;
  tenth: number;
}
const chunkKey = (c: { path: string; chunkIndex: number }) => `${c.path}#${c.chunkIndex}`;
const truthOf = (ranked: Candidate[], key: (c: Candidate) => string): Truth => {
  const top = ranked.slice(0, 10);
  return { keys: new Set(top.map(key)), tenth: top.at(-1)?.score ?? Number.POSITIVE_INFINITY };
};
/**
 * Recall@10 of `hits` (key and, where known, the hit's exact score): strict counts the truth's own
 * keys; ties also counts a hit scoring as well as the truth's 10th (an equally right answer).
 */
function recallOf(hits: { key: string; score?: number }[], truth: Truth): { strict: number; ties: number } {
  const n = Math.max(1, truth.keys.size);
  const strict = hits.filter((h) => truth.keys.has(h.key)).length;
  const ties = hits.filter((h) => truth.keys.has(h.key) || (h.score ?? Number.NEGATIVE_INFINITY) >= truth.tenth - 1e-9).length;
  return { strict: Math.min(strict, n) / n, ties: Math.min(ties, n) / n };
}
const showRecall = (r: { strict: number; ties: number }) => `${r.ties.toFixed(3)} (strict ${r.strict.toFixed(3)})`;

/**
 * Server mode's bulk path: the chunks' search indexes (HNSW, GIN, BM25) dropped, `load` run, then
 * the same indexes built again from their definitions (parallel, with room to build in memory) and
 * the table vacuumed and analysed.
 */
async function loadThenIndex(prisma: Db, load: () => Promise<void>): Promise<{ loadSeconds: number; indexSeconds: number }> {
  const indexes = await prisma.$queryRaw<{ name: string; def: string }[]>`
    SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE tablename = 'chunks' AND indexdef ~ 'USING (hnsw|gin|bm25)'`;
  for (const i of indexes) await prisma.$executeRawUnsafe(`DROP INDEX "${i.name}"`);
  const t0 = performance.now();
  await load();
  const t1 = performance.now();
  await prisma.$transaction(
    async (tx) => {
      await tx.$executeRawUnsafe(`SET LOCAL maintenance_work_mem = '8GB'`);
      await tx.$executeRawUnsafe('SET LOCAL max_parallel_maintenance_workers = 1');
      for (const i of indexes) await tx.$executeRawUnsafe(i.def);
    },
    { timeout: 4 * 3600_000, maxWait: 60_000 },
  );
  // As after any bulk load: otherwise autovacuum's pass over the new rows (and every HNSW index)
  // would start during the queries that follow and share the machine with them.
  await prisma.$executeRawUnsafe('VACUUM (ANALYZE) chunks');
  return { loadSeconds: (t1 - t0) / 1000, indexSeconds: (performance.now() - t1) / 1000 };
}

/** The server settings that shape these numbers, as `name value` pairs. */
async function serverSettings(prisma: Db): Promise<string> {
  const names = ['shared_buffers', 'effective_cache_size', 'work_mem', 'max_parallel_workers_per_gather', 'jit'];
  const rows = await prisma.$queryRaw<{ name: string; setting: string }[]>`
    SELECT name, current_setting(name) AS setting FROM unnest(${names}::text[]) AS name`;
  return rows.map((r) => `${r.name} ${r.setting}`).join(', ');
}

async function main(): Promise<void> {
  const databaseUrl = PG ? await freshDatabase(PG, 'bench_search') : undefined;
  const gateway = await embeddedGateway('search', {
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    SEARCH_EF_SEARCH: String(EF_SEARCH),
    // `--fresh-chunks 0` measures without the fresh tier (every chunk into the HNSW index at once).
    SEARCH_FRESH_CHUNKS: arg('fresh-chunks', '10000'),
    // JOB_POLL_MS stays at its default: jobs queued in this process wake its workers at once, and a
    // 50 ms poll (as this script once set) put two empty job claims a second per worker, ~2 ms of
    // the database's one thread each, in the way of the searches it times.
  });
  const { app, url } = gateway;
  const prisma = app.database.prisma;
  const call = async (method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const send = () =>
      fetch(url + route, {
        method,
        headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    // A keep-alive socket the server closed while the bulk fill ran can reset the first request after it.
    const res = await send().catch(send);
    return { status: res.status, body: (await res.json()) as any };
  };
  /** Waits until the fresh tier is merged into the HNSW index (and vacuumed); says how long that took. */
  const mergedAfter = async () => {
    const m0 = performance.now();
    while ((await prisma.chunk.count({ where: { fresh: true } })) > 0) await new Promise((res) => setTimeout(res, 100));
    return `merged into the HNSW index in the background ${((performance.now() - m0) / 1000).toFixed(1)} s later`;
  };
  const lines: string[] = [];
  try {
    const ws = (await call('POST', '/v1/orgs/bench/workspaces', { name: 'bench' })).body.workspace_id;
    const vols = `/v1/orgs/bench/workspaces/${ws}/volumes`;
    /** Runs one reindex job of a volume to its end: into its own model, or into `model` (a PATCH queues it). */
    const reindex = async (volumeId: string, model?: string) => {
      if (model) await call('PATCH', `${vols}/${volumeId}`, { embedding_model_id: model });
      else await call('POST', `${vols}/${volumeId}/reindex`, {});
      let lastPrint = 0;
      for (;;) {
        const r = (await call('GET', `${vols}/${volumeId}/reindex`)).body;
        if (r.reindex_status === 'completed') break;
        if (r.reindex_status === 'failed') throw new Error(JSON.stringify(r));
        if (performance.now() - lastPrint > 5000) {
          lastPrint = performance.now();
          process.stdout.write(`  reindex ${JSON.stringify(r.reindex_progress)}\n`);
        }
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    const model = `hash-${DIMS}`;

    // 1. Indexing throughput through the pipeline.
    const ix = (
      await call('POST', vols, { name: 'indexing', indexing_mode: 'manual', embedding_model_id: model, chunk_size: 64, chunk_overlap: 8 })
    ).body.volume.volume_id;
    const ENTRIES = 1000;
    for (let i = 0; i < ENTRIES; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) => call('PUT', `${vols}/${ix}/entries/notes/${i + j}.md`, { content_text: paragraph(9) })),
      );
    }
    process.stdout.write(`wrote ${ENTRIES} entries\n`);
    const t0 = performance.now();
    await reindex(ix);
    const indexSeconds = (performance.now() - t0) / 1000;
    const ixChunks = await prisma.chunk.count({ where: { volumeId: ix } });
    const ixMerge = await mergedAfter();
    process.stdout.write(
      `indexing (reindex): ${ixChunks} chunks in ${indexSeconds.toFixed(1)} s = ${(ixChunks / indexSeconds).toFixed(0)} chunks/s; ${ixMerge}\n`,
    );

    // The same texts written to an auto-mode volume: first write → every entry indexed (searchable).
    // (Waits first for the reindex's fresh chunks to be merged, so each part starts from an empty tier.)
    const texts = await prisma.entry.findMany({ where: { volumeId: ix }, select: { path: true, contentText: true } });
    const auto = (await call('POST', vols, { name: 'ingest-auto', embedding_model_id: model, chunk_size: 64, chunk_overlap: 8 })).body
      .volume.volume_id;
    const a0 = performance.now();
    for (let i = 0; i < texts.length; i += 50) {
      await Promise.all(
        texts.slice(i, i + 50).map((t) => call('PUT', `${vols}/${auto}/entries${t.path}`, { content_text: t.contentText })),
      );
    }
    const writeSeconds = (performance.now() - a0) / 1000;
    while ((await prisma.entry.count({ where: { volumeId: auto, isIndexed: false } })) > 0) await new Promise((res) => setTimeout(res, 50));
    const autoSeconds = (performance.now() - a0) / 1000;
    const autoChunks = await prisma.chunk.count({ where: { volumeId: auto } });
    const autoLine = `${autoChunks} chunks of ${texts.length} entries written at 50 concurrent requests (${writeSeconds.toFixed(1)} s of writes) and searchable ${autoSeconds.toFixed(1)} s after the first write = **${(autoChunks / autoSeconds).toFixed(0)} chunks/s**; ${await mergedAfter()}`;
    process.stdout.write(`indexing (auto): ${autoLine}\n`);

    // The same texts again, through the batch write (POST …/batch): 50 entries a request, 4 requests at a time.
    const batched = (await call('POST', vols, { name: 'ingest-batch', embedding_model_id: model, chunk_size: 64, chunk_overlap: 8 })).body
      .volume.volume_id;
    const b0 = performance.now();
    const batches = Array.from({ length: Math.ceil(texts.length / 50) }, (_, i) => texts.slice(i * 50, i * 50 + 50));
    for (let i = 0; i < batches.length; i += 4) {
      await Promise.all(
        batches.slice(i, i + 4).map(async (batch) => {
          const res = await call('POST', `${vols}/${batched}/batch`, {
            entries: batch.map((t) => ({ path: t.path, content_text: t.contentText })),
          });
          if (res.status !== 200) throw new Error(`batch write: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
        }),
      );
    }
    const batchWriteSeconds = (performance.now() - b0) / 1000;
    while ((await prisma.entry.count({ where: { volumeId: batched, isIndexed: false } })) > 0)
      await new Promise((res) => setTimeout(res, 50));
    const batchSeconds = (performance.now() - b0) / 1000;
    const batchChunks = await prisma.chunk.count({ where: { volumeId: batched } });
    const batchLine = `${batchChunks} chunks of ${texts.length} entries written in batches of 50 (4 requests at a time; ${batchWriteSeconds.toFixed(1)} s of writes) and searchable ${batchSeconds.toFixed(1)} s after the first write = **${(batchChunks / batchSeconds).toFixed(0)} chunks/s**; ${await mergedAfter()}`;
    process.stdout.write(`indexing (batch): ${batchLine}\n`);
    if (INDEXING_ONLY) return;
    if ((await call('DELETE', `${vols}/${batched}?permanent=true`)).status >= 300) throw new Error('could not delete the batch volume');
    // Gone before the search part, so the database holds what earlier runs measured (the shared
    // BM25 and HNSW indexes would otherwise also hold this volume's copies of the same texts).
    if ((await call('DELETE', `${vols}/${auto}?permanent=true`)).status >= 300) throw new Error('could not delete the ingestion volume');
    // Their chunks stay in the HNSW graph as dead entries until a VACUUM: the one a quiet gateway's
    // maintenance runs (this script keeps maintenance off, so it runs the same rule itself). Without
    // it, the 10k searches would scan ~9k dead neighbours beside 10k live ones (measured: hybrid p50
    // 54 ms without it, 27 ms with it).
    if (app.runtime.settings.vacuum.byGateway) {
      const vacuumed = await vacuumWhereDue(app.runtime, true);
      if (!vacuumed.some((r) => r.table === 'chunks' && r.action === 'vacuum')) throw new Error('chunks were not due for a VACUUM');
    } else await prisma.$executeRawUnsafe('VACUUM (ANALYZE) chunks'); // a server's autovacuum would, in its own time

    // 2 + 3. Scale, latency and recall.
    const big = (await call('POST', vols, { name: 'scale', indexing_mode: 'manual', embedding_model_id: model })).body.volume.volume_id;
    // Where keyword search ranks with BM25 sparse vectors, the fill writes them as indexing would.
    const sparseKeywords = (await keywordRanking(app.runtime)) === 'bm25_sparsevec';
    const bm25Avgdl = sparseKeywords ? typicalChunkWords(await prisma.volume.findUniqueOrThrow({ where: { id: big } })) : undefined;
    const embedder = new HashingEmbedder(DIMS);
    const rows: string[] = [];
    let have = 0;
    const results: string[] = [];
    const sweeps: string[] = [];
    const fetchSweeps: string[] = [];
    const sparseRecalls: string[] = [];
    for (const size of SIZES) {
      const fillStart = performance.now();
      const fill = async () => {
        while (have < size) {
          const n = Math.min(500, size - have);
          await fillChunks(prisma, { volumeId: big, model, embedder, from: have, count: n, ...(bm25Avgdl ? { bm25Avgdl } : {}) });
          have += n;
          if (have % 10_000 === 0) process.stdout.write(`  ${have} chunks (${((performance.now() - fillStart) / 1000).toFixed(0)} s)\n`);
        }
      };
      if (databaseUrl) {
        const { loadSeconds, indexSeconds } = await loadThenIndex(prisma, fill);
        rows.push(
          `filled to ${size} in ${loadSeconds.toFixed(0)} s of rows + ${indexSeconds.toFixed(0)} s of index builds and VACUUM ANALYZE`,
        );
      } else {
        await fill();
        rows.push(`filled to ${size} in ${((performance.now() - fillStart) / 1000).toFixed(0)} s`);
      }
      process.stdout.write(`${rows.at(-1)}\n`);
      // The IDF the sparse leg uses is read from the statistics at most once a minute: read the new ones.
      forgetLexemeStats(app.runtime);
      const queries = Array.from({ length: QUERIES }, (_, i) => (i % 2 ? pick(corpus.queries).query : pick(sentences)));
      const latency: Record<string, number[]> = { hybrid: [], semantic: [], keyword: [] };
      const served = new Map<string, string[]>(); // query → the hybrid top 10 as served, path#chunk
      const modes = ['hybrid', 'semantic', 'keyword'] as const;
      // One untimed pass first: right after a fill, whichever mode ran first paid for reading the
      // indexes into memory (measured: hybrid p50 38 ms over HTTP against 19 ms for its statement
      // alone, timed later). Then the modes take turns query by query, so no mode is timed on a
      // colder or busier machine than the others.
      for (const q of queries) for (const mode of modes) await call('POST', `${vols}/${big}/search`, { query: q, mode, top_k: 10 });
      for (const [i, q] of queries.entries()) {
        for (const j of modes.keys()) {
          const mode = modes[(i + j) % modes.length] as (typeof modes)[number];
          const t = performance.now();
          const r = await call('POST', `${vols}/${big}/search`, { query: q, mode, top_k: 10 });
          if (r.status !== 200) throw new Error(JSON.stringify(r.body));
          latency[mode]?.push(performance.now() - t);
          if (mode === 'hybrid')
            served.set(
              q,
              r.body.results.map((h: { path: string; chunk_index: number }) => `${h.path}#${h.chunk_index}`),
            );
        }
      }
      // Recall@10 of the HNSW scan against an exact scan: the search's own SQL, for the same query vectors.
      const scopes = [{ volumeId: big, volumeName: 'scale', embedderId: model, pathRegexes: null }];
      // Recall@10 of the served hybrid against the same hybrid ranked exactly: the search's own SQL
      // and fusion with an exact nearest-neighbour scan in place of HNSW (the BM25 leg is exact top-k).
      const ranking = await keywordRanking(app.runtime);
      const hybridFound = { ties: 0, strict: 0 };
      // The exact scan's top 10 of each query is also the truth the HNSW recall below is measured against.
      const truths = new Map<string, Truth>();
      // The exact hybrid's top 10 of each query, and every candidate's exact fused score.
      const exactTops = new Map<string, { truth: Truth; score: Map<string, number> }>();
      for (const q of queries) {
        const vec = `[${embedder.embedOne(q).join(',')}]`;
        // An exact scan of 100k vectors takes seconds on PGlite: past Prisma's default 5 s.
        const rowsExact = await prisma.$transaction(
          async (tx) => {
            await useSearchPlans(tx, ranking === 'bm25' ? { bm25: { limit: HYBRID_DEPTH } } : {});
            const leg = { dims: DIMS, q: vec, scopes, indexed: false };
            // Keyword ranks as the served hybrid takes them: the comparison isolates the HNSW legs
            // (the sparse BM25 leg, where it is one, is scored exactly over every match too).
            const sparse = sparseKeywords ? { sparse: await sparseQuery(app.runtime, q), sparseScan: 'exact' as const } : {};
            return tx.$queryRaw<SearchRow[]>(searchSql([leg], ranking, q, scopes, {}, HYBRID_DEPTH, { bm25Scores: 'rank', ...sparse }));
          },
          { timeout: 600_000, maxWait: 60_000 },
        );
        const list = (leg: string) => rankedList(rowsExact.filter((r) => r.leg === leg));
        truths.set(
          vec,
          truthOf(list('s0'), (c) => c.chunkId),
        );
        const exactFused = fuse([list('s0'), list('k')]);
        const exact = { truth: truthOf(exactFused, chunkKey), score: new Map(exactFused.map((c) => [chunkKey(c), c.score])) };
        exactTops.set(q, exact);
        const found = recallOf(
          (served.get(q) ?? []).map((key) => ({ key, score: exact.score.get(key) })),
          exact.truth,
        );
        hybridFound.ties += found.ties;
        hybridFound.strict += found.strict;
      }
      const hybridRecall = { ties: hybridFound.ties / queries.length, strict: hybridFound.strict / queries.length };
      // Where BM25 is sparse vectors: recall@10 of their HNSW scan against scoring every match exactly.
      if (sparseKeywords) {
        const found = { ties: 0, strict: 0 };
        const times: number[] = [];
        for (const q of queries) {
          const sq = await sparseQuery(app.runtime, q);
          const top = (scan: 'hnsw' | 'exact') =>
            prisma.$transaction(
              async (tx) => {
                if (scan === 'hnsw') await useHnsw(tx, 10, true, EF_SEARCH);
                return tx.$queryRaw<SearchRow[]>(sparseBm25Sql(sq, scopes, {}, 10, scan));
              },
              { timeout: 600_000, maxWait: 60_000 },
            );
          const t = performance.now();
          const ann = await top('hnsw');
          times.push(performance.now() - t);
          const r = recallOf(
            ann.map((a) => ({ key: a.chunk_id, score: Number(a.score) })),
            truthOf(rankedList(await top('exact')), (c) => c.chunkId),
          );
          found.ties += r.ties;
          found.strict += r.strict;
        }
        sparseRecalls.push(
          `${size.toLocaleString('en')} chunks — recall@10 ${showRecall({ ties: found.ties / queries.length, strict: found.strict / queries.length })}, SQL p50 ${ms(stats(times).p50)}, p95 ${ms(stats(times).p95)}`,
        );
        process.stdout.write(`sparse BM25 ${sparseRecalls.at(-1)}\n`);
      }
      process.stdout.write(`served hybrid recall@10 vs exact hybrid: ${showRecall(hybridRecall)}\n`);
      const annTop = (vec: string, ef: number) =>
        prisma.$transaction(async (tx) => {
          await useHnsw(tx, 10, true, EF_SEARCH);
          await tx.$executeRawUnsafe(`SET LOCAL hnsw.ef_search = ${ef}`);
          return tx.$queryRaw<SearchRow[]>(semanticSql(DIMS, vec, scopes, {}, 10, 'hnsw'));
        });
      // Recall and SQL time of the HNSW scan for several candidate list sizes.
      const sweep: string[] = [];
      let hit = { ties: 0, strict: 0 };
      for (const ef of EF_SWEEP) {
        const found = { ties: 0, strict: 0 };
        const times: number[] = [];
        for (const [vec, truth] of truths) {
          const t = performance.now();
          const ann = await annTop(vec, ef);
          times.push(performance.now() - t);
          // The scan's rows carry their exact score (computed again from the stored vector).
          const r = recallOf(
            ann.map((a) => ({ key: a.chunk_id, score: Number(a.score) })),
            truth,
          );
          found.ties += r.ties;
          found.strict += r.strict;
        }
        const recall = { ties: found.ties / truths.size, strict: found.strict / truths.size };
        if (ef === EF_SEARCH) hit = recall;
        sweep.push(`ef_search ${ef}: recall@10 ${showRecall(recall)}, p50 ${ms(stats(times).p50)}`);
      }
      sweeps.push(`${size.toLocaleString('en')} chunks — ${sweep.join('; ')}`);
      process.stdout.write(`${sweeps.at(-1)}\n`);
      // The served hybrid's SQL and fusion in other shapes, against the exact hybrid (at the served
      // depth): fusing shallower lists (`depth` rows a leg), a smaller HNSW candidate list (`ef`), the
      // HNSW leg over-fetching f × the depth and keeping the best by exact distance. What each buys.
      const fetchSweep: string[] = [];
      for (const shape of HYBRID_SHAPES) {
        const found = { ties: 0, strict: 0 };
        const times: number[] = [];
        for (const q of queries) {
          const vec = `[${embedder.embedOne(q).join(',')}]`;
          const sparse = sparseKeywords ? { sparse: await sparseQuery(app.runtime, q) } : {};
          const t = performance.now();
          const rowsAnn = await prisma.$transaction(async (tx) => {
            await useSearchPlans(tx, {
              hnsw: { limit: shape.depth * shape.f, iterative: true, efSearch: shape.ef },
              ...(ranking === 'bm25' ? { bm25: { limit: shape.depth } } : {}),
            });
            return tx.$queryRaw<SearchRow[]>(
              searchSql([{ dims: DIMS, q: vec, scopes, indexed: true }], ranking, q, scopes, {}, shape.depth, {
                semanticLimit: shape.depth * shape.f,
                bm25Scores: 'rank',
                ...sparse,
              }),
            );
          });
          times.push(performance.now() - t);
          const list = (leg: string) => rankedList(rowsAnn.filter((r) => r.leg === leg));
          const top = fuse([list('s0').slice(0, shape.depth), list('k')])
            .slice(0, 10)
            .map(chunkKey);
          const exact = exactTops.get(q);
          if (!exact) continue;
          const r = recallOf(
            top.map((key) => ({ key, score: exact.score.get(key) })),
            exact.truth,
          );
          found.ties += r.ties;
          found.strict += r.strict;
        }
        const st = stats(times);
        fetchSweep.push(
          `depth ${shape.depth}, ef_search ${shape.ef}${shape.f > 1 ? `, over-fetch ${shape.f}×` : ''}${shape.depth === HYBRID_DEPTH && shape.ef === EF_SEARCH && shape.f === 1 ? ' (served)' : ''}: recall@10 ${showRecall({ ties: found.ties / queries.length, strict: found.strict / queries.length })}, SQL p50 ${ms(st.p50)}, p95 ${ms(st.p95)}`,
        );
      }
      if (OVERFETCH) {
        fetchSweeps.push(`${size.toLocaleString('en')} chunks — ${fetchSweep.join('; ')}`);
        process.stdout.write(`${fetchSweeps.at(-1)}\n`);
      }
      const probe = `[${embedder.embedOne('x').join(',')}]`;
      const plan = await prisma.$transaction(async (tx) => {
        await useHnsw(tx, 10, true, EF_SEARCH);
        return tx.$queryRaw<{ 'QUERY PLAN': string }[]>(Prisma.sql`EXPLAIN ${semanticSql(DIMS, probe, scopes, {}, 10, 'hnsw')}`);
      });
      const usesIndex = plan.some((p) => /hnsw/i.test(p['QUERY PLAN']));
      // The same queries as an exact scan, for comparison.
      const exactLatency: number[] = [];
      for (const q of queries.slice(0, 20)) {
        const t = performance.now();
        await prisma.$queryRaw(semanticSql(DIMS, `[${embedder.embedOne(q).join(',')}]`, scopes, {}, 10, 'exact'));
        exactLatency.push(performance.now() - t);
      }
      const e = stats(exactLatency);
      const h = stats(latency.hybrid as number[]);
      const s = stats(latency.semantic as number[]);
      const k = stats(latency.keyword as number[]);
      const rss = process.memoryUsage().rss / 2 ** 20;
      results.push(
        `| ${size.toLocaleString('en')} | ${ms(h.p50)} | ${ms(h.p95)} | ${ms(k.p50)} | ${ms(k.p95)} | ${ms(s.p50)} | ${ms(s.p95)} | ${ms(e.p50)} | ${showRecall(hit)}${usesIndex ? '' : ' (no HNSW in plan)'} | ${showRecall(hybridRecall)} | ${rss.toFixed(0)} MiB |`,
      );
      process.stdout.write(`${results.at(-1)}\n`);
    }

    // 4. Reindexes at scale: jobs over the largest volume, through the pipeline. Into the same model,
    //    every chunk's text is unchanged, so rows stay in place; into another model (the semantic
    //    static-use-384), every chunk is embedded and written again and the old ones dropped at the switch.
    let reindexLine = '';
    if (REINDEX_SCALE) {
      const n = await prisma.chunk.count({ where: { volumeId: big } });
      const timed = async (to?: string) => {
        const r0 = performance.now();
        await reindex(big, to);
        const seconds = (performance.now() - r0) / 1000;
        return `${seconds.toFixed(0)} s = **${(n / seconds).toFixed(0)} chunks/s**; ${await mergedAfter()}`;
      };
      const same = await timed();
      process.stdout.write(`reindex, same model: ${same}\n`);
      const other = await timed(STATIC_EMBEDDER_ID);
      process.stdout.write(`reindex, ${model} → ${STATIC_EMBEDDER_ID}: ${other}\n`);
      reindexLine =
        `**Reindex at scale** (jobs over the ${n.toLocaleString('en')}-chunk volume, one chunk an entry; the fresh tier holds up to ${app.runtime.settings.freshChunks.toLocaleString('en')} chunks, the rest go straight into the HNSW graph). ` +
        `Into the same model (every chunk unchanged, so every row stays in place): ${same}. ` +
        `Into another model, \`${model}\` → \`${STATIC_EMBEDDER_ID}\` (every chunk embedded and written again, ${STATIC_DIMS} dimensions, the old rows dropped at the switch; ` +
        `${app.runtime.settings.soleWriter && app.runtime.settings.reindexBulkMinChunks > 0 && n >= app.runtime.settings.reindexBulkMinChunks ? 'a bulk reindex: rows loaded outside the HNSW index, then the index built' : 'rows inserted into the HNSW index one at a time'}): ${other}.`;
    }

    const date = new Date().toISOString().slice(0, 10);
    const keywordRank = await keywordRanking(app.runtime);
    const database = databaseUrl
      ? `${await describeDatabase(databaseUrl)} (server mode: the gateway in this process over \`DATABASE_URL\`, a fresh database; ${await serverSettings(prisma)})`
      : 'Embedded PGlite (one process, its database in a worker thread, fresh `DATA_DIR`)';
    const flags = [
      `--dims ${DIMS}`,
      `--sizes ${SIZES.join(',')}`,
      ...(PG ? [`--pg ${PG}`] : []),
      ...(QUERIES !== 100 ? [`--queries ${QUERIES}`] : []),
      ...(OVERFETCH ? [] : ['--no-overfetch']),
      ...(REINDEX_SCALE ? ['--reindex-scale'] : []),
    ];
    lines.push(
      `${database}, hashing embedder \`${model}\`, HNSW \`ef_search\` = ${EF_SEARCH} with iterative scans, ${date}.`,
      `Machine: ${machine()}. Run: \`npx tsx bench/search.ts ${flags.join(' ')}\`.`,
      '',
      `**Indexing** (one reindex job over ${ENTRIES} text entries, chunk_size 64 tokens): ${ixChunks} chunks in ${indexSeconds.toFixed(1)} s = **${(ixChunks / indexSeconds).toFixed(0)} chunks/s** (chunking, embedding, chunk rows with their vector into the fresh tier and the BM25 index; batches of 16 entries; the merge into HNSW follows in the background).`,
      '',
      `**Ingestion** (write → searchable, auto indexing, the same texts): ${autoLine}.`,
      '',
      `**Ingestion by batch writes** (the same texts, \`POST …/batch\`): ${batchLine}.`,
      '',
      `**Search** over HTTP, ${QUERIES} queries per mode (half corpus paraphrases, half sentences), top_k 10, after one untimed pass of them all, the modes taking turns query by query; recall@10 of the HNSW scan against an exact scan of the same vectors. ` +
        'The corpus repeats its sentences, so many chunks score exactly alike: recall counts a hit that is in the exact top 10 or scores as well as its 10th (ties counted), ' +
        'with the strict count (only the exact top 10 itself, whose ties are broken by path) in brackets:',
      '',
      `Keyword search ranks with ${KEYWORD_RANKINGS[keywordRank]}; RSS is the whole process after the queries (${databaseUrl ? "the gateway alone: Postgres' memory is not in it" : 'gateway and its database thread'}).`,
      '',
      '| Chunks | Hybrid p50 | Hybrid p95 | Keyword p50 | Keyword p95 | Semantic p50 | Semantic p95 | Exact scan p50 (SQL only) | HNSW recall@10 | Served hybrid recall@10 vs exact hybrid | RSS |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...results,
      '',
      `HNSW candidate list size against recall (SQL time of the nearest-neighbour query alone, same ${QUERIES} queries):`,
      '',
      ...sweeps.map((l) => `- ${l}`),
      '',
      ...(sparseRecalls.length > 0
        ? [
            `BM25 sparse vectors: recall@10 of their HNSW scan (the keyword leg as served, ef_search ${EF_SEARCH}) against scoring every chunk that shares a word with the query (same ${QUERIES} queries, same IDF):`,
            '',
            ...sparseRecalls.map((l) => `- ${l}`),
            '',
          ]
        : []),
      ...(OVERFETCH
        ? [
            `Hybrid in other shapes: fusion depth (rows each leg gives the fusion; served ${HYBRID_DEPTH}), HNSW \`ef_search\` (served ${EF_SEARCH}), ` +
              "the HNSW leg over-fetching (the best by exact distance kept; served 1×): recall@10 against the exact hybrid at the served depth, and the search statement's time (one statement, both legs):",
            '',
            ...fetchSweeps.map((l) => `- ${l}`),
            '',
          ]
        : []),
      ...(reindexLine ? [reindexLine, ''] : []),
      `Bulk fill (straight SQL, same rows as the pipeline${databaseUrl ? "; the chunks' HNSW (dense and sparse), GIN and BM25 indexes dropped before and built after each step, as pgvector's README advises for bulk loads, then VACUUM ANALYZE" : ''}): ${rows.join('; ')}.`,
    );
    await writeSection(databaseUrl ? 'Search (server mode)' : 'Search', lines.join('\n'));
  } finally {
    await gateway.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
