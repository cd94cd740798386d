import { vector } from '@electric-sql/pglite-pgvector';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { forgetLexemeStats, SPARSE_INDEX, sparseQuery, typicalChunkWords } from '../src/domain/search/bm25-sparse.js';
import {
  BM25_INDEX,
  bm25ScanScores,
  bm25Sql,
  keywordRanking,
  type SearchRow,
  searchPlansSql,
  searchSql,
  sparseScan,
  useBm25Index,
  useSearchPlans,
} from '../src/domain/search/sql.js';
import { Prisma } from '../src/generated/prisma/client.js';
import { HashingEmbedder } from '../src/indexing/embedders/hashing.js';
import { startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { DEFAULT_POOL_CONNECTIONS, type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';
import { indexed } from './helpers/search.js';

// The keyword half of search ranks with BM25: pg_textsearch's index where the database has it (embedded
// PGlite), BM25 as pgvector sparse vectors where it does not (most Postgres servers), ts_rank_cd where
// neither: same request, same response shape, scores in 0–1.

const ORG = 'org-bm25';
const keyword = (gw: TestGateway, v: TestVolume, query: string, extra: Record<string, unknown> = {}) =>
  gw.call('POST', `${v.volumeUrl}/search`, { query, mode: 'keyword', ...extra });
const paths = (res: { body: { results: { path: string }[] } }) => res.body.results.map((r) => r.path);

/** Twelve documents saying "report" again and again, one that names a rare word once, one about roses. */
async function writeCorpus(gw: TestGateway, v: TestVolume): Promise<void> {
  for (let i = 0; i < 12; i++) {
    await putText(gw, v, `/reports/r${i}.md`, `Quarterly report ${i}: the report of the report committee, report after report.`);
  }
  await putText(gw, v, '/zephyr.md', 'A note on the zephyr, and a report on it.');
  await putText(gw, v, '/garden/roses.md', 'Roses need pruning in early spring.');
  await indexed(gw, v.volumeId, 14);
}

/** What keyword search answers for writeCorpus's volume, whichever BM25 ranks it. */
function keywordContract(ctx: () => { gw: TestGateway; v: TestVolume }) {
  it('a rare word outweighs a common one (inverse document frequency): the zephyr note comes first', async () => {
    const { gw, v } = ctx();
    const res = await keyword(gw, v, 'zephyr report', { top_k: 5 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(paths(res)[0]).toBe('/zephyr.md');
    const scores = res.body.results.map((r: { score: number }) => r.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    for (const s of scores) expect(s > 0 && s < 1).toBe(true);
    // Only documents with a query word match at all.
    expect(paths(res)).not.toContain('/garden/roses.md');
  });

  it('filters apply inside the ranking: a path prefix returns its best matches, top_k of them', async () => {
    const { gw, v } = ctx();
    const res = await keyword(gw, v, 'report', { top_k: 3, filters: { path_prefix: '/reports/' } });
    expect(res.body.results).toHaveLength(3);
    for (const p of paths(res)) expect(p.startsWith('/reports/')).toBe(true);
    const none = await keyword(gw, v, 'report', { filters: { path_prefix: '/garden/' } });
    expect(none.body.results).toEqual([]);
  });

  it('a filter that only the weakest match passes still returns it: the ranking goes as deep as it must', async () => {
    // The zephyr note says "report" once and ranks last of the 13 notes that do; the index scan
    // starts as deep as top_k (1) and widens until a row passes the filter.
    const { gw, v } = ctx();
    const res = await keyword(gw, v, 'report', { top_k: 1, filters: { path_prefix: '/zephyr.md' } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(paths(res)).toEqual(['/zephyr.md']);
    expect(res.body.results[0].score).toBeGreaterThan(0);
  });

  it('odd queries answer 200 with no keyword hits instead of an error (stop words, punctuation, operators)', async () => {
    const { gw, v } = ctx();
    for (const q of ['the and of', '&& || ! <->', "'; DROP TABLE chunks; --x", 'C++ (v2.0) [x] {y} $1 % _ \\', '🙂🙂']) {
      const res = await keyword(gw, v, q);
      expect(res.status, `${q}: ${JSON.stringify(res.body)}`).toBe(200);
      expect(paths(res)).not.toContain('/garden/roses.md');
    }
  });

  it('a rewrite is ranked by its new words once indexed; a deleted entry stops matching at once', async () => {
    const { gw, v } = ctx();
    await putText(gw, v, '/garden/roses.md', 'Tulips are planted in autumn.');
    await indexed(gw, v.volumeId, 14);
    expect(paths(await keyword(gw, v, 'pruning roses'))).not.toContain('/garden/roses.md');
    expect(paths(await keyword(gw, v, 'tulips'))).toEqual(['/garden/roses.md']);
    expect((await gw.call('DELETE', v.entry('/garden/roses.md'))).status).toBe(200);
    expect(paths(await keyword(gw, v, 'tulips'))).toEqual([]);
  });
}

describe('BM25 keyword search (embedded PGlite with pg_textsearch)', () => {
  let gw: TestGateway;
  let v: TestVolume;
  beforeAll(async () => {
    gw = await startGateway({ JOB_POLL_MS: '50' });
    v = await newVolume(gw, ORG);
    await writeCorpus(gw, v);
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('is what this database uses, and the query plan is the ordered BM25 index scan, filters included', async () => {
    expect(await keywordRanking(gw.app.runtime)).toBe('bm25');
    const scopes = [{ volumeId: v.volumeId, volumeName: 'v', embedderId: 'hash-1024', pathRegexes: ['^/reports/'] }];
    const plan = await gw.app.database.prisma.$transaction(async (tx) => {
      await useBm25Index(tx, 10);
      return tx.$queryRaw<{ 'QUERY PLAN': string }[]>(
        Prisma.sql`EXPLAIN ${bm25Sql('quarterly report', scopes, { tags: ['x'], path_prefix: '/reports/' }, 10, 'scan')}`,
      );
    });
    const text = plan.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toContain(`Index Scan using ${BM25_INDEX}`);
    expect(text).not.toMatch(/Seq Scan on chunks|Sort/);
  });

  it('keeps no full-text column or GIN index up to date, which only ts_rank_cd reads', async () => {
    const db = gw.app.database.prisma;
    const [gin] = await db.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_class WHERE relname = 'chunks_tsv_idx'`;
    expect(gin?.n).toBe(0);
    const [rows] = await db.$queryRaw<{ chunks: number; tsv: number }[]>`
      SELECT count(*)::int AS chunks, count(tsv)::int AS tsv FROM chunks WHERE volume_id = ${v.volumeId}`;
    expect(rows?.chunks).toBeGreaterThanOrEqual(14);
    expect(rows?.tsv).toBe(0);
  });

  it('stores each chunk vector exactly as the embedder made it', async () => {
    const [row] = await gw.app.database.prisma.$queryRaw<{ content: string; embedding: string }[]>`
      SELECT c.content, c.embedding::text AS embedding FROM chunks c JOIN entries e ON e.id = c.entry_id
      WHERE e.volume_id = ${v.volumeId} AND e.path = '/zephyr.md'`;
    const made = new HashingEmbedder(1024).embedOne(row?.content as string);
    expect(made.filter((x) => x !== 0).length * 2).toBeLessThan(1024);
    expect((JSON.parse(row?.embedding as string) as number[]).map(Math.fround)).toEqual(made.map(Math.fround));
  });

  it('hybrid is one statement over chunks (both legs), planned with the HNSW and the BM25 index', async () => {
    expect(gw.app.runtime.settings.parallelSearchLegs).toBe(false);
    gw.queries.length = 0;
    const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'zephyr report', top_k: 3 });
    expect(res.status).toBe(200);
    expect(paths(res)[0]).toBe('/zephyr.md');
    const overChunks = gw.queries.filter((q) => /\bFROM chunks\b/.test(q));
    // Both legs in one statement; the keyword leg is never asked for on its own. (This volume has
    // fewer chunks than hybrid's depth of 50, so the exact nearest-neighbour fallback runs too.)
    expect(overChunks.filter((q) => q.includes('UNION ALL') && q.includes('<@>') && q.includes('<=>'))).toHaveLength(1);
    expect(overChunks.filter((q) => q.includes('<@>'))).toHaveLength(1);
    expect(overChunks.length).toBeLessThanOrEqual(2);

    const q = `[${new HashingEmbedder(1024).embedOne('zephyr report').join(',')}]`;
    const scopes = [{ volumeId: v.volumeId, volumeName: 'v', embedderId: 'hash-1024', pathRegexes: ['^/'] }];
    const nearest = [{ dims: 1024, q, scopes, indexed: true }];
    const plan = await gw.app.database.prisma.$transaction(async (tx) => {
      await useSearchPlans(tx, { hnsw: { limit: 50, iterative: true, efSearch: 200 }, bm25: { limit: 50 } });
      return tx.$queryRaw<{ 'QUERY PLAN': string }[]>(
        Prisma.sql`EXPLAIN ${searchSql(nearest, 'bm25', 'zephyr report', scopes, { path_prefix: '/' }, 50, { bm25Scores: 'rank' })}`,
      );
    });
    const text = plan.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toContain('chunks_embedding_1024_hnsw_idx');
    expect(text).toContain(`Index Scan using ${BM25_INDEX}`);
    expect(text).not.toContain('Seq Scan on chunks');
  });

  it('plans every search without JIT, for that search only', async () => {
    // A server built with LLVM would otherwise JIT-compile each search: the nodes a search steers the
    // planner away from are priced at 10^10, past jit_above_cost (~200 ms a search on PostgreSQL 15).
    const settings = Prisma.sql`SELECT current_setting('jit') AS jit, current_setting('enable_seqscan') AS seqscan`;
    for (const plans of [{ bm25: { limit: 10 } }, { hnsw: { limit: 10, iterative: true, efSearch: 200 }, bm25: { limit: 10 } }, {}]) {
      expect(await gw.app.runtime.sqlInOne([searchPlansSql(plans), settings])).toEqual([{ jit: 'off', seqscan: 'off' }]);
    }
    expect(await gw.app.runtime.sqlInOne([settings])).toEqual([{ jit: 'on', seqscan: 'on' }]);
  });

  it('scores each hit as the index scan computed it: best first, in 0–1, the rare word on top, the same rows as scoring again', async () => {
    // Not equal to <@> on the text to the digit: while the index still counts dead row versions (a
    // merge of the fresh tier leaves some until a VACUUM) its corpus statistics differ (~1 % seen).
    expect(await bm25ScanScores(gw.app.runtime)).toBe(true);
    const query = 'zephyr quarterly report';
    const res = await keyword(gw, v, query, { top_k: 5 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.results.length).toBe(5);
    const scores = res.body.results.map((r: { score: number }) => r.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    for (const s of scores) expect(s > 0 && s < 1).toBe(true);
    // The zephyr note (a rare word) scores above the reports, which score alike.
    expect(res.body.results[0].path).toBe('/zephyr.md');
    expect(res.body.results[0].score).toBeGreaterThan(res.body.results[1].score);
    // A pg_textsearch without the scan's scores scores each hit again: the same rows.
    const scopes = [{ volumeId: v.volumeId, volumeName: 'v', embedderId: 'hash-1024', pathRegexes: null }];
    const leg = (scores: 'scan' | 'rescore') =>
      gw.app.runtime.sqlInOne([searchPlansSql({ bm25: { limit: 5 } }), bm25Sql(query, scopes, {}, 5, scores)]) as unknown as Promise<
        SearchRow[]
      >;
    const [scan, rescore] = [await leg('scan'), await leg('rescore')];
    expect(rescore.map((r) => r.chunk_id)).toEqual(scan.map((r) => r.chunk_id));
  });

  it("scores only as deep as the search asks: pg_textsearch's default_limit is the leg's limit, for that search only", async () => {
    // Joined to entries, the scan is not handed the LIMIT and scored 1,000 matches (searchPlansSql).
    const limit = Prisma.sql`SELECT current_setting('pg_textsearch.default_limit') AS n`;
    expect(await gw.app.runtime.sqlInOne([searchPlansSql({ bm25: { limit: 10 } }), limit])).toEqual([{ n: '10' }]);
    expect(await gw.app.runtime.sqlInOne([limit])).toEqual([{ n: '1000' }]);
  });

  keywordContract(() => ({ gw, v }));
});

describe('BM25 as sparse vectors on a Postgres without pg_textsearch (server mode)', () => {
  let db: PgliteServer;
  let gw: TestGateway;
  let v: TestVolume;
  const sql = <T>(q: Prisma.Sql) => gw.app.database.prisma.$queryRaw<T[]>(q);
  beforeAll(async () => {
    db = await startPgliteServer(DEFAULT_POOL_CONNECTIONS, { vector });
    gw = await startGateway({ DATABASE_URL: db.url, JOB_POLL_MS: '50' });
    v = await newVolume(gw, ORG);
    await writeCorpus(gw, v);
  });
  afterAll(async () => {
    await gw?.stop();
    await db?.stop();
  });

  it('the migration leaves pg_textsearch out and builds the sparse index; chunks carry tsv and their BM25 vector', async () => {
    const indexes = await sql<{ relname: string }>(Prisma.sql`
      SELECT relname FROM pg_class WHERE relname IN (${BM25_INDEX}, ${SPARSE_INDEX}, 'chunks_tsv_idx') ORDER BY relname`);
    expect(indexes.map((r) => r.relname)).toEqual([SPARSE_INDEX, 'chunks_tsv_idx']);
    expect(await keywordRanking(gw.app.runtime)).toBe('bm25_sparsevec');
    const [rows] = await sql<{ chunks: number; tsv: number; bm25: number }>(Prisma.sql`
      SELECT count(*)::int AS chunks, count(tsv)::int AS tsv, count(bm25)::int AS bm25 FROM chunks WHERE volume_id = ${v.volumeId}`);
    expect(rows).toEqual({ chunks: 14, tsv: 14, bm25: 14 });
    // One dimension per lexeme: the zephyr note's three words (note, zephyr, report), the weights BM25's
    // term-frequency part against the volume's typical chunk (512 tokens: ~307 words).
    const [z] = await sql<{ v: string }>(Prisma.sql`
      SELECT c.bm25::text AS v FROM chunks c JOIN entries e ON e.id = c.entry_id WHERE e.volume_id = ${v.volumeId} AND e.path = '/zephyr.md'`);
    const weights = (z?.v.match(/\{(.*)\}/)?.[1] ?? '').split(',').map((p) => Number(p.split(':')[1]));
    const one = (2.2 / (1 + 1.2 * (0.25 + (0.75 * 3) / typicalChunkWords({ chunkingStrategy: 'recursive', chunkSize: 512 })))).toFixed(4);
    expect(weights.map((w) => w.toFixed(4))).toEqual([one, one, one]);
  });

  it("hybrid sends its semantic and keyword halves at once, two statements on two connections; the answer is the one statement's", async () => {
    const rt = gw.app.runtime;
    // On by default in server mode (off embedded, where one PGlite runs one statement at a time).
    expect(rt.settings.parallelSearchLegs).toBe(true);
    expect(loadConfig({ SEARCH_PARALLEL_LEGS: 'false' }).parallelSearchLegs).toBe(false);
    expect(() => loadConfig({ SEARCH_PARALLEL_LEGS: 'maybe' })).toThrow(/SEARCH_PARALLEL_LEGS/);
    const sent = rt.sqlInOne;
    const events: string[] = [];
    rt.sqlInOne = async (statements) => {
      // The search statements (the volume lookup before them goes this way too).
      if (!statements.some((s) => s.strings.join('').includes('AS leg'))) return sent(statements);
      events.push('sent');
      try {
        return await sent(statements);
      } finally {
        events.push('answered');
      }
    };
    gw.queries.length = 0;
    const body = { query: 'zephyr report', top_k: 5 };
    const res = await gw.call('POST', `${v.volumeUrl}/search`, body).finally(() => {
      rt.sqlInOne = sent;
    });
    expect(res.status).toBe(200);
    expect(paths(res)[0]).toBe('/zephyr.md');
    expect(events).toEqual(['sent', 'sent', 'answered', 'answered']);
    // (The exact nearest-neighbour fallback runs too: this volume has fewer chunks than hybrid's depth.)
    const searches = gw.queries.filter((q) => q.includes('AS leg'));
    expect(searches).toHaveLength(2);
    expect(searches.filter((q) => q.includes('<=>') && !q.includes('<#>'))).toHaveLength(1);
    expect(searches.filter((q) => q.includes('<#>') && !q.includes('<=>'))).toHaveLength(1);

    // SEARCH_PARALLEL_LEGS=false: both halves in one statement, the same answer.
    rt.settings.parallelSearchLegs = false;
    gw.queries.length = 0;
    const one = await gw.call('POST', `${v.volumeUrl}/search`, body).finally(() => {
      rt.settings.parallelSearchLegs = true;
    });
    expect(gw.queries.filter((q) => q.includes('AS leg') && q.includes('<#>') && q.includes('<=>'))).toHaveLength(1);
    expect(one.body).toEqual(res.body);

    // A query of stop words has no keyword leg under sparse BM25: its semantic half is the only statement.
    gw.queries.length = 0;
    const stop = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'the of and', top_k: 5 });
    expect(stop.status).toBe(200);
    const stopSearches = gw.queries.filter((q) => q.includes('AS leg'));
    expect(stopSearches).toHaveLength(1);
    expect(stopSearches[0]).toContain('<=>');
    expect(stopSearches[0]).not.toContain('<#>');
  });

  it('hybrid in one statement is planned with both HNSW indexes (dense and sparse)', async () => {
    const sq = await sparseQuery(gw.app.runtime, 'zephyr report');
    const q = `[${new HashingEmbedder(1024).embedOne('zephyr report').join(',')}]`;
    const scopes = [{ volumeId: v.volumeId, volumeName: 'v', embedderId: 'hash-1024', pathRegexes: ['^/'] }];
    const nearest = [{ dims: 1024, q, scopes, indexed: true }];
    const plan = await gw.app.database.prisma.$transaction(async (tx) => {
      await useSearchPlans(tx, { hnsw: { limit: 50, iterative: true, efSearch: 200 } });
      return tx.$queryRaw<{ 'QUERY PLAN': string }[]>(
        Prisma.sql`EXPLAIN ${searchSql(nearest, 'bm25_sparsevec', 'zephyr report', scopes, { path_prefix: '/' }, 50, { sparse: sq, sparseScan: 'hnsw' })}`,
      );
    });
    const text = plan.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toContain('chunks_embedding_1024_hnsw_idx');
    expect(text).toContain(`Index Scan using ${SPARSE_INDEX}`);
    expect(text).not.toContain('Seq Scan on chunks');
  });

  it('IDF comes from the planner statistics once the table is analysed; rare words are then scored exactly', async () => {
    const rt = gw.app.runtime;
    // Not analysed yet (PGlite runs no autovacuum): every lexeme weighs 1, and the index answers.
    const before = await sparseQuery(rt, 'zephyr report');
    expect(before.estimatedMatches).toBe(Number.POSITIVE_INFINITY);
    expect(new Set(before.vector.match(/:[0-9.e-]+/g))).toEqual(new Set([':1']));
    expect(before.allRare).toBe(false);
    expect(sparseScan(before)).toBe('hnsw');

    await sql(Prisma.sql`ANALYZE chunks`);
    forgetLexemeStats(rt);
    const after = await sparseQuery(rt, 'zephyr report');
    // 1 chunk of 14 names the zephyr, 13 a report: ln(1 + 13) against ln(1 + 1/13).
    expect([...after.lexemes].sort()).toEqual(['report', 'zephyr']);
    expect(after.estimatedMatches).toBeCloseTo(14, 0);
    expect(sparseScan(after)).toBe('exact');
    // Words the statistics do not list are rarer than every one they do: scored exactly, however many.
    const rare = await sparseQuery(rt, 'tulips daffodils crocuses hyacinths');
    expect(rare.allRare).toBe(true);
    expect(sparseScan(rare)).toBe('exact');
    expect((await sparseQuery(rt, 'tulips report')).allRare).toBe(false);
    const idf = (after.vector.match(/\{(.*)\}/)?.[1] ?? '').split(',').map((p) => Number(p.split(':')[1]));
    expect(idf.map((w) => w.toFixed(3)).sort()).toEqual([Math.log(1 + 1 / 13).toFixed(3), Math.log(14).toFixed(3)].sort());

    gw.queries.length = 0;
    const res = await keyword(gw, v, 'zephyr report', { top_k: 3 });
    expect(paths(res)[0]).toBe('/zephyr.md');
    // Scored over the GIN index's matches, not through the HNSW index.
    expect(gw.queries.filter((q) => q.includes('<#>') && q.includes('to_tsquery'))).toHaveLength(1);
  });

  keywordContract(() => ({ gw, v }));

  it('falls back to ts_rank_cd where pgvector has no sparse vectors (here: the sparse index gone)', async () => {
    const rt = gw.app.runtime;
    await sql(Prisma.sql`DROP INDEX ${Prisma.raw(SPARSE_INDEX)}`);
    rt.state.keywordRanking = undefined;
    expect(await keywordRanking(rt)).toBe('ts_rank_cd');
    await putText(gw, v, '/garden/lilies.md', 'Lilies open at dawn.');
    await indexed(gw, v.volumeId, 14);
    const [row] = await sql<{ tsv: boolean; bm25: boolean }>(Prisma.sql`
      SELECT c.tsv IS NOT NULL AS tsv, c.bm25 IS NOT NULL AS bm25 FROM chunks c JOIN entries e ON e.id = c.entry_id
      WHERE e.volume_id = ${v.volumeId} AND e.path = '/garden/lilies.md'`);
    expect(row).toEqual({ tsv: true, bm25: false });
    const res = await keyword(gw, v, 'lilies');
    expect(res.status).toBe(200);
    expect(paths(res)).toEqual(['/garden/lilies.md']);
    expect(res.body.results[0].score > 0 && res.body.results[0].score < 1).toBe(true);
  });
});
