import fs from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';

// The labelled corpus (test/fixtures/search-corpus.json): distinct topics, paraphrased queries with
// the one document each should find. Hybrid must find more of them in its top 5 than either
// method alone.

interface Corpus {
  documents: { id: string; path: string; text: string }[];
  queries: { query: string; relevant: string[] }[];
}

let gw: TestGateway;
let v: TestVolume;
let corpus: Corpus;

beforeAll(async () => {
  corpus = JSON.parse(await fs.readFile(new URL('./fixtures/search-corpus.json', import.meta.url), 'utf8'));
  gw = await startGateway({ JOB_POLL_MS: '50' });
  v = await newVolume(gw, 'org-quality');
  for (let i = 0; i < corpus.documents.length; i += 15) {
    await Promise.all(corpus.documents.slice(i, i + 15).map((d) => gw.call('PUT', v.entry(d.path), { content_text: d.text })));
  }
  await waitFor(async () => {
    const rows = await gw.app.database.prisma.entry.findMany({ where: { volumeId: v.volumeId }, select: { isIndexed: true } });
    return rows.length === corpus.documents.length && rows.every((r) => r.isIndexed);
  }, 60_000);
});
afterAll(() => gw?.stop());

it('corpus: at least 50 documents on distinct topics and 20 paraphrased queries', () => {
  expect(corpus.documents.length).toBeGreaterThanOrEqual(50);
  expect(corpus.queries.length).toBeGreaterThanOrEqual(20);
  expect(new Set(corpus.documents.map((d) => d.path)).size).toBe(corpus.documents.length);
});

it('hybrid recall@5 beats keyword-only and semantic-only', async () => {
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
  console.log(
    `recall@5 on ${corpus.documents.length} documents / ${corpus.queries.length} queries: ` +
      Object.entries(recall)
        .map(([m, r]) => `${m} ${r.toFixed(3)}`)
        .join(', '),
  );
  expect(recall.hybrid).toBeGreaterThan(recall.keyword as number);
  expect(recall.hybrid).toBeGreaterThan(recall.semantic as number);
}, 120_000);
