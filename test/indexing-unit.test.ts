import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_TEXT_BYTES } from '../src/domain/entries/rules.js';
import { withinBytes } from '../src/domain/search/reindex.js';
import { fuse } from '../src/domain/search/sql.js';
import { chunkText, countTokens, flattenJson } from '../src/indexing/chunking.js';
import { embedAll } from '../src/indexing/embedders/embedder.js';
import { HashingEmbedder } from '../src/indexing/embedders/hashing.js';
import { OpenAIEmbedder } from '../src/indexing/embedders/openai.js';
import { type EmbeddingsServer, startEmbeddingsServer } from './helpers/embeddings-server.js';

// The dense logic of indexing: chunking, the hashing embedder, the OpenAI-compatible client
// (against a real HTTP server) and reciprocal rank fusion.

describe('chunking', () => {
  const para = (n: number, word: string) => Array.from({ length: n }, (_, i) => `${word}${i}`).join(' ');
  const text = [para(40, 'alpha'), para(40, 'beta'), para(40, 'gamma')].join('\n\n');

  it('recursive: chunks stay within the size in tokens and prefer paragraph boundaries', async () => {
    const chunks = await chunkText(text, { strategy: 'recursive', size: 100, overlap: 0 });
    for (const c of chunks) expect(countTokens(c)).toBeLessThanOrEqual(100);
    expect(chunks.some((c) => c.startsWith('beta0'))).toBe(true);
    expect(chunks.join(' ').split(/\s+/).filter(Boolean)).toHaveLength(120);
  });

  it('recursive: neighbouring chunks share up to the overlap', async () => {
    const long = para(300, 'w');
    const chunks = await chunkText(long, { strategy: 'recursive', size: 50, overlap: 10 });
    expect(chunks.length).toBeGreaterThan(5);
    for (let i = 1; i < chunks.length; i++) {
      const prev = (chunks[i - 1] as string).split(' ');
      const first = (chunks[i] as string).split(' ')[0] as string;
      expect(prev).toContain(first);
    }
  });

  it('fixed: windows of exactly size tokens stepping by size - overlap; none: one chunk; blank: no chunk', async () => {
    const long = para(200, 'x');
    const total = countTokens(long);
    const chunks = await chunkText(long, { strategy: 'fixed', size: 64, overlap: 16 });
    for (const c of chunks.slice(0, -1)) expect(countTokens(c)).toBeGreaterThanOrEqual(62);
    expect(chunks).toHaveLength(Math.ceil((total - 64) / 48) + 1);
    expect(await chunkText(long, { strategy: 'none', size: 64, overlap: 0 })).toEqual([long]);
    expect(await chunkText('  \n\n ', { strategy: 'recursive', size: 64, overlap: 0 })).toEqual([]);
  });

  it('the largest text an entry may hold: one run of a letter, or of blanks, chunks without overflowing the stack', async () => {
    // One regexp match over a run of a few MiB overflowed V8's stack (6 MiB of one letter did).
    const letters = 'a'.repeat(MAX_TEXT_BYTES);
    for (const strategy of ['recursive', 'fixed'] as const) {
      const chunks = await chunkText(letters, { strategy, size: 16, overlap: 0 });
      expect(chunks.length).toBeGreaterThan(MAX_TEXT_BYTES / 256);
      expect(chunks.join('')).toBe(letters);
    }
    // Tabs are no separator: the whole run goes to the last resort, as the letters do.
    const tabbed = `start${'\t'.repeat(MAX_TEXT_BYTES - 8)}end`;
    expect(await chunkText(tabbed, { strategy: 'recursive', size: 512, overlap: 0 })).toEqual(['start', 'end']);
  }, 60_000);

  it('flattens JSON to key.path: value lines', () => {
    expect(flattenJson({ title: 'Plan', tags: ['a', 'b'], owner: { name: 'Ann', age: 3 }, steps: [{ do: 'x' }], nil: null })).toBe(
      'title: Plan\ntags: a, b\nowner.name: Ann\nowner.age: 3\nsteps.0.do: x',
    );
    expect(flattenJson('just text')).toBe('just text');
  });
});

describe('hashing embedder', () => {
  const e = new HashingEmbedder(1024);
  const cos = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * (b[i] as number), 0);

  it('is deterministic, unit length, of its dims; related texts score above unrelated ones', async () => {
    const [a, b, c, d] = await e.embed([
      'Bees make honey',
      'Bees make honey',
      'beekeepers harvest honey from hives',
      'tax on capital gains',
    ]);
    expect(a).toEqual(b);
    expect(a).toHaveLength(1024);
    expect(cos(a as number[], a as number[])).toBeCloseTo(1, 6);
    expect(cos(a as number[], c as number[])).toBeGreaterThan(cos(a as number[], d as number[]));
    expect(new HashingEmbedder(384).id).toBe('hash-384');
    expect(await e.embed([''])).toEqual([new Array(1024).fill(0)]);
  });
});

describe('OpenAI-compatible embedder', () => {
  let server: EmbeddingsServer;
  beforeAll(async () => {
    server = await startEmbeddingsServer(8);
  });
  afterAll(() => server.close());
  const client = (over: Partial<ConstructorParameters<typeof OpenAIEmbedder>[0]> = {}) =>
    new OpenAIEmbedder({ url: server.url, apiKey: 'k', model: 'm', dims: 8, batchSize: 3, timeoutMs: 2000, ...over });

  it('batches by maxBatch and keeps order', async () => {
    server.requests = 0;
    const texts = Array.from({ length: 7 }, (_, i) => `text ${i}`);
    const vectors = await embedAll(client(), texts);
    expect(server.requests).toBe(3);
    expect(vectors).toEqual(await new HashingEmbedder(8).embed(texts));
  });

  it('retries transient failures and gives up on refusals at once', async () => {
    server.requests = 0;
    server.failNext = 2;
    expect(await client().embed(['retry me'])).toHaveLength(1);
    expect(server.requests).toBe(3);
    server.poison = 'bad';
    server.requests = 0;
    try {
      await expect(client().embed(['bad input'])).rejects.toThrow(/400/);
      expect(server.requests).toBe(1);
    } finally {
      server.poison = undefined;
    }
  });

  it('times out each attempt and reports wrong dimensions', async () => {
    server.delayMs = 300;
    try {
      await expect(client({ timeoutMs: 100, attempts: 2 }).embed(['slow'])).rejects.toThrow(/timeout|aborted/i);
    } finally {
      server.delayMs = 0;
    }
    await expect(client({ dims: 16 }).embed(['x'])).rejects.toThrow(/not 16 numbers/);
  });
});

describe('reciprocal rank fusion', () => {
  const c = (id: string, score = 0) => ({ chunkId: id, entryId: id, volumeId: 'v', path: `/${id}`, chunkIndex: 0, preview: '', score });

  it('sums 1/(60 + rank) over lists, scaled so first in both lists is 1; ties break by path', () => {
    const fused = fuse([
      [c('a'), c('b'), c('c')],
      [c('a'), c('c'), c('d')],
    ]);
    expect(fused.map((x) => x.chunkId)).toEqual(['a', 'c', 'b', 'd']);
    expect(fused[0]?.score).toBeCloseTo(1, 10);
    expect(fused[1]?.score).toBeCloseTo((1 / 63 + 1 / 62) / (2 / 61), 10);
    expect(fused[2]?.score).toBeCloseTo(1 / 62 / (2 / 61), 10);
    expect(fused[3]?.score).toBeCloseTo(1 / 63 / (2 / 61), 10);
    expect(fuse([[], []])).toEqual([]);
  });
});

describe('reindex batches', () => {
  const sized = (...mib: number[]) => mib.map((m, i) => ({ id: `e${i}`, sizeBytes: BigInt(Math.round(m * 1024 * 1024)) }));
  const ids = (xs: { id: string }[]) => xs.map((x) => x.id);
  const MAX = 4 * 1024 * 1024;

  it('take entries until their content passes the budget, and always the first', () => {
    expect(ids(withinBytes(sized(1, 1, 1, 1), MAX))).toEqual(['e0', 'e1', 'e2', 'e3']); // exactly 4 MiB
    expect(ids(withinBytes(sized(1.5, 1.5, 1.5), MAX))).toEqual(['e0', 'e1']);
    expect(ids(withinBytes(sized(9, 0.1), MAX))).toEqual(['e0']); // one entry past the budget goes alone
    expect(ids(withinBytes(sized(0.1, 9), MAX))).toEqual(['e0']);
    expect(withinBytes([], MAX)).toEqual([]);
  });
});
