import fs from 'node:fs/promises';
import { vector } from '@electric-sql/pglite-pgvector';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forgetLexemeStats } from '../src/domain/search/bm25-sparse.js';
import { keywordRanking } from '../src/domain/search/sql.js';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { DEFAULT_POOL_CONNECTIONS, type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

// The labelled corpus (test/fixtures/search-corpus.json): distinct topics, paraphrased queries with
// the one document each should find. Hybrid must find more of them in its top 5 than either
// method alone, whichever BM25 ranks the keywords.

interface Corpus {
  documents: { id: string; path: string; text: string }[];
  queries: { query: string; relevant: string[] }[];
}

/**
 * The corpus in a volume of a gateway on `DATABASE_URL` (embedded PGlite when undefined), every entry
 * indexed, the chunks table analysed (a server's autovacuum would; the sparse BM25 leg's IDF comes
 * from those statistics).
 */
async function loaded(corpus: Corpus, env: Record<string, string>): Promise<{ gw: TestGateway; v: TestVolume }> {
  const gw = await startGateway({ JOB_POLL_MS: '50', ...env });
  const v = await newVolume(gw, 'org-quality');
  for (let i = 0; i < corpus.documents.length; i += 15) {
    await Promise.all(corpus.documents.slice(i, i + 15).map((d) => gw.call('PUT', v.entry(d.path), { content_text: d.text })));
  }
  await waitFor(async () => {
    const rows = await gw.app.database.prisma.entry.findMany({ where: { volumeId: v.volumeId }, select: { isIndexed: true } });
    return rows.length === corpus.documents.length && rows.every((r) => r.isIndexed);
  }, 60_000);
  await gw.app.database.prisma.$executeRawUnsafe('ANALYZE chunks');
  forgetLexemeStats(gw.app.runtime);
  return { gw, v };
}

/** Recall@5 of each mode over the corpus' queries. */
async function recallAt5(gw: TestGateway, v: TestVolume, corpus: Corpus): Promise<Record<string, number>> {
  const pathOf = new Map(corpus.documents.map((d) => [d.id, d.path]));
  const recall: Record<string, number> = {};
  for (const mode of ['keyword', 'semantic', 'hybrid']) {
    let sum = 0;
    for (const q of corpus.queries) {
      const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: q.query, mode, top_k: 5 });
      expect(res.status).toBe(200);
      const top = new Set(res.body.results.map((r: any) => r.path));
      sum += q.relevant.filter((id) => top.has(pathOf.get(id))).length / q.relevant.length;
    }
    recall[mode] = sum / corpus.queries.length;
  }
  return recall;
}

let corpus: Corpus;
beforeAll(async () => {
  corpus = JSON.parse(await fs.readFile(new URL('./fixtures/search-corpus.json', import.meta.url), 'utf8'));
});

it('corpus: at least 50 documents on distinct topics and 20 paraphrased queries', () => {
  expect(corpus.documents.length).toBeGreaterThanOrEqual(50);
  expect(corpus.queries.length).toBeGreaterThanOrEqual(20);
  expect(new Set(corpus.documents.map((d) => d.path)).size).toBe(corpus.documents.length);
});

// Embedded PGlite ranks keywords with pg_textsearch's BM25; a Postgres without it (here a PGlite
// server with pgvector alone) with BM25 as sparse vectors.
describe.each([
  { database: 'embedded (pg_textsearch BM25)', ranking: 'bm25', server: false },
  { database: 'server mode (BM25 as sparse vectors)', ranking: 'bm25_sparsevec', server: true },
])('$database', ({ ranking, server }) => {
  let db: PgliteServer | undefined;
  let gw: TestGateway;
  let v: TestVolume;
  beforeAll(async () => {
    if (server) db = await startPgliteServer(DEFAULT_POOL_CONNECTIONS, { vector });
    ({ gw, v } = await loaded(corpus, db ? { DATABASE_URL: db.url } : {}));
  }, 120_000);
  afterAll(async () => {
    await gw?.stop();
    await db?.stop();
  });

  it('hybrid recall@5 beats keyword-only and semantic-only', async () => {
    expect(await keywordRanking(gw.app.runtime)).toBe(ranking);
    const recall = await recallAt5(gw, v, corpus);
    console.log(
      `recall@5 (${ranking}) on ${corpus.documents.length} documents / ${corpus.queries.length} queries: ` +
        Object.entries(recall)
          .map(([m, r]) => `${m} ${r.toFixed(3)}`)
          .join(', '),
    );
    expect(recall.hybrid).toBeGreaterThan(recall.keyword as number);
    expect(recall.hybrid).toBeGreaterThan(recall.semantic as number);
  }, 120_000);
});
