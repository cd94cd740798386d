import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCpuPool } from '../src/indexing/cpu-pool.js';
import { StaticEmbedder } from '../src/indexing/embedders/static.js';
import { startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

// `static-use-384`, the table distilled from Universal Sentence Encoder lite (scripts/distill-embedder.ts):
// deterministic unit vectors, the same in a worker thread as in line, and semantic where the hashing
// embedder is lexical: paraphrases from the labelled corpus that share few words with their document.

interface Corpus {
  documents: { id: string; path: string; text: string }[];
  queries: { query: string; relevant: string[] }[];
}

const norm = (v: number[]) => Math.hypot(...v);
const cosine = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * (b[i] as number), 0);

describe('the static embedder', () => {
  const embedder = new StaticEmbedder();

  it('returns the same unit vector of 384 numbers for a text, whatever instance or batch embeds it', async () => {
    const texts = ['The lighthouse keeper logged the storm.', 'Ein Leuchtturmwärter 東京 ✓', 'a'.repeat(5000)];
    const [first, ...rest] = await embedder.embed([texts[0] as string, ...texts]);
    const again = await new StaticEmbedder().embed(texts);
    expect(rest).toEqual(again);
    expect(first).toEqual(again[0]);
    for (const v of again) {
      expect(v).toHaveLength(384);
      expect(norm(v)).toBeCloseTo(1, 6);
    }
    // Nothing the vocabulary knows (no text, or whitespace only): the zero vector, as hashing gives for stopwords.
    expect(norm(embedder.embedOne(' \n\t'))).toBe(0);
  });

  it('cuts words past 64 characters, so a run without spaces costs what 64 characters cost', () => {
    expect(embedder.tokenIds('x'.repeat(100_000))).toEqual(embedder.tokenIds('x'.repeat(64)));
  });

  it('places paraphrases closer than unrelated text', () => {
    const [dog, puppy, tax] = ['a dog was barking all night', 'the puppy kept yapping until morning', 'filing quarterly tax returns'].map(
      (t) => embedder.embedOne(t),
    ) as number[][];
    expect(cosine(dog as number[], puppy as number[])).toBeGreaterThan(cosine(dog as number[], tax as number[]) + 0.1);
  });

  it('gives the same vectors from the worker threads as in line', async () => {
    const pool = createCpuPool({ threads: 1, taskTimeoutMs: 30_000 });
    try {
      // Over the in-line limit, so this batch is embedded in a worker thread.
      const texts = Array.from({ length: 20 }, (_, i) => `Entry ${i}: sourdough starters, tide pools and binoculars. `.repeat(5));
      expect(await pool.staticEmbed(texts)).toEqual(texts.map((t) => Array.from(Float32Array.from(embedder.embedOne(t)))));
      expect(await pool.staticEmbed(['short query'])).toEqual([Array.from(Float32Array.from(embedder.embedOne('short query')))]);
    } finally {
      await pool.close();
    }
  });
});

describe('searching with static-use-384', () => {
  let gw: TestGateway;
  let corpus: Corpus;
  let byModel: Record<string, TestVolume>;

  beforeAll(async () => {
    corpus = JSON.parse(await fs.readFile(new URL('./fixtures/search-corpus.json', import.meta.url), 'utf8'));
    gw = await startGateway({ JOB_POLL_MS: '50' });
    const staticVolume = await newVolume(gw, 'org-static', { embedding_model_id: 'static-use-384' });
    const hashVolume = await newVolume(gw, 'org-static', { embedding_model_id: 'hash-1024' });
    byModel = { 'static-use-384': staticVolume, 'hash-1024': hashVolume };
    for (const v of [staticVolume, hashVolume]) {
      for (let i = 0; i < corpus.documents.length; i += 15) {
        await Promise.all(corpus.documents.slice(i, i + 15).map((d) => gw.call('PUT', v.entry(d.path), { content_text: d.text })));
      }
      await indexed(gw, v.volumeId, corpus.documents.length, 60_000);
    }
  }, 120_000);
  afterAll(() => gw?.stop());

  it('indexes 384-dimension chunks under its id', async () => {
    const chunks = await gw.app.database.prisma.chunk.groupBy({
      by: ['embedderId', 'dims'],
      where: { volumeId: byModel['static-use-384']?.volumeId },
      _count: true,
    });
    expect(chunks).toEqual([{ embedderId: 'static-use-384', dims: 384, _count: corpus.documents.length }]);
  });

  it('finds the document for paraphrases that the hashing embedder misses', async () => {
    const pathOf = new Map(corpus.documents.map((d) => [d.id, d.path]));
    // From the corpus: each query's document is far down the hashing embedder's semantic ranking.
    const paraphrases = [
      '8x42 or 10x42 for spotting birds',
      'regex special characters explained',
      'stargazing with a small scope',
      'rockpooling with kids, what to look out for',
    ];
    for (const query of paraphrases) {
      const expected = pathOf.get(corpus.queries.find((q) => q.query === query)?.relevant[0] as string);
      expect(expected).toBeDefined();
      const search = async (model: string) => {
        const res = await gw.call('POST', `${byModel[model]?.volumeUrl}/search`, { query, mode: 'semantic', top_k: 5 });
        expect(res.status).toBe(200);
        return res.body.results.map((r: { path: string }) => r.path) as string[];
      };
      expect((await search('static-use-384'))[0], query).toBe(expected);
      expect(await search('hash-1024'), query).not.toContain(expected);
    }
  });

  it('serves hybrid and keyword searches over its volume', async () => {
    for (const mode of ['hybrid', 'keyword']) {
      const res = await gw.call('POST', `${byModel['static-use-384']?.volumeUrl}/search`, {
        query: 'how often to feed a sourdough culture kept in the fridge',
        mode,
        top_k: 3,
      });
      expect(res.status).toBe(200);
      expect(res.body.results[0].path).toBe('/topics/sourdough-starter.md');
    }
  });
});
