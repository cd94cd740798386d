import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkCounts } from '../src/domain/search/sizing.js';
import { startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

// Small volumes are scanned exactly rather than through the HNSW and BM25 indexes every volume
// shares (src/domain/search/sizing.ts). The bounds here are tiny so a few entries make a volume
// "large"; the defaults (1,000 and 200 chunks) are sized in BENCHMARKS.md.

const TOPICS = ['lighthouse keeper', 'orbital mechanics', 'sourdough starter', 'tidal pools', 'glacier retreat', 'violin varnish'];

describe('search sizing', () => {
  let gw: TestGateway;
  let small: TestVolume;
  let large: TestVolume;
  beforeAll(async () => {
    gw = await startGateway({ JOB_POLL_MS: '50', SEARCH_EXACT_BELOW_CHUNKS: '12', SEARCH_BM25_EXACT_BELOW_CHUNKS: '8' });
    small = await newVolume(gw, 'org-size', { embedding_model_id: 'hash-1024' });
    large = await newVolume(gw, 'org-size', { embedding_model_id: 'hash-1024' });
    for (const [i, topic] of TOPICS.entries()) {
      await gw.call('PUT', small.entry(`/t/${i}.md`), { content_text: `${topic} field notes` });
      for (let j = 0; j < 3; j++) await gw.call('PUT', large.entry(`/t/${i}-${j}.md`), { content_text: `${topic} field notes, part ${j}` });
    }
    await indexed(gw, small.volumeId, TOPICS.length);
    await indexed(gw, large.volumeId, TOPICS.length * 3);
  });
  afterAll(async () => {
    await gw?.stop();
  });

  /** One search's hits, and how its statements read the chunks. */
  const search = async (v: TestVolume, mode: string, body: Record<string, unknown> = {}) => {
    const seen = gw.queries.length;
    const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'glacier retreat', mode, top_k: 3, ...body });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const sql = gw.queries.slice(seen).join('\n');
    return {
      hits: res.body.results as { path: string; score: number }[],
      hnsw: /::vector\(1024\) <=>/.test(sql),
      bm25Index: /ORDER BY c\.content <@>/.test(sql),
      bm25Exact: /-\(c\.content <@>/.test(sql),
    };
  };

  it('scans a small volume exactly, in every mode, and a large one through the indexes', async () => {
    for (const mode of ['semantic', 'hybrid', 'keyword']) {
      const s = await search(small, mode);
      expect(s.hits[0]?.path, mode).toBe('/t/4.md');
      expect({ mode, hnsw: s.hnsw, bm25Index: s.bm25Index }).toEqual({ mode, hnsw: false, bm25Index: false });
      expect(s.bm25Exact, mode).toBe(mode !== 'semantic');

      const l = await search(large, mode);
      expect(l.hits[0]?.path.startsWith('/t/4-'), mode).toBe(true);
      expect({ mode, hnsw: l.hnsw, bm25Index: l.bm25Index, bm25Exact: l.bm25Exact }).toEqual({
        mode,
        hnsw: mode !== 'keyword',
        bm25Index: mode !== 'semantic',
        bm25Exact: false,
      });
    }
  });

  it('answers as the indexes do: the same hits, the same scores', async () => {
    const rt = gw.app.runtime;
    const exact: Record<string, unknown> = {};
    for (const mode of ['semantic', 'hybrid', 'keyword']) exact[mode] = (await search(small, mode, { top_k: 6 })).hits;
    const bounds = rt.settings.exactBelow;
    rt.settings.exactBelow = { nearest: 0, bm25: 0 };
    try {
      for (const mode of ['semantic', 'hybrid', 'keyword']) {
        const viaIndex = await search(small, mode, { top_k: 6 });
        expect(viaIndex.hnsw || viaIndex.bm25Index, mode).toBe(true);
        const paths = (hits: unknown) => (hits as { path: string }[]).map((h) => h.path);
        expect(paths(viaIndex.hits), mode).toEqual(paths(exact[mode]));
        // BM25 scores agree to a few parts in 10^7 with no dead row versions; ~1 % before a VACUUM.
        for (const [i, h] of viaIndex.hits.entries())
          expect(h.score, `${mode} ${h.path}`).toBeCloseTo((exact[mode] as { score: number }[])[i]!.score, 1);
      }
    } finally {
      rt.settings.exactBelow = bounds;
    }
  });

  it('keeps filters and "k hits when k match" on the exact scans', async () => {
    const s = await search(small, 'hybrid', { top_k: 10, filters: { path_prefix: '/t/' } });
    expect(s.hits).toHaveLength(TOPICS.length);
    const none = await search(small, 'keyword', { filters: { path_prefix: '/nowhere/' } });
    expect(none.hits).toEqual([]);
  });

  it("starts pg_textsearch's scan as deep as the volume's share of the index implies", async () => {
    const rt = gw.app.runtime;
    await rt.db.$executeRawUnsafe('ANALYZE chunks');
    rt.state.chunkCounts.clear(); // counted again, with the statistics' table size
    const depthOf = async (v: TestVolume, topK: number) => {
      const seen = gw.queries.length;
      await gw.call('POST', `${v.volumeUrl}/search`, { query: 'glacier retreat', mode: 'keyword', top_k: topK });
      const sql = gw.queries.slice(seen).join('\n');
      return Number(/'pg_textsearch\.default_limit', '(\d+)'/.exec(sql)?.[1]);
    };
    const [stats] = await rt.db.$queryRaw<{ total: number }[]>`SELECT reltuples::float8 AS total FROM pg_class WHERE relname = 'chunks'`;
    const total = Number(stats?.total);
    const chunks = await rt.db.chunk.count({ where: { volumeId: large.volumeId } });
    expect(total).toBeGreaterThan(chunks); // other volumes share the index
    // Twice the depth its share implies (limit ÷ share), at least the limit.
    expect(await depthOf(large, 3)).toBe(Math.max(3, Math.ceil((2 * 3 * total) / chunks)));
    // Sizes unknown (the statistics say nothing yet): the leg's limit, as before.
    rt.state.chunksTotal = undefined;
    expect(await depthOf(large, 3)).toBe(3);
  });

  it('counts sizes up to the bound, reuses a count for a while, and sees a volume grow at the next count', async () => {
    const rt = gw.app.runtime;
    const scopes = [small, large].map((v) => ({ volumeId: v.volumeId, embedderId: 'hash-1024' }));
    rt.state.chunkCounts.clear();
    const counts = await chunkCounts(rt, scopes, 10);
    expect([...counts.values()]).toEqual([TOPICS.length, 10]);
    // Aged 10 s: a volume at its bound is not counted again for a minute (large volumes seldom
    // shrink, and counting one reads the bound's worth of entries); one below it is.
    for (const entry of rt.state.chunkCounts.values()) entry.at -= 10_000;
    const aged = [...rt.state.chunkCounts.values()].map((e) => e.at);
    await chunkCounts(rt, scopes, 10);
    const [smallAt, largeAt] = [...rt.state.chunkCounts.entries()]
      .sort(([a], [b]) => (a.startsWith(small.volumeId) ? -1 : b.startsWith(small.volumeId) ? 1 : 0))
      .map(([, e]) => e.at);
    expect(smallAt).toBeGreaterThan(aged[0]!);
    expect(largeAt).toBe(aged[1]);
    // A count stopped at a lower bound is not taken for one at a higher bound.
    expect([...(await chunkCounts(rt, scopes, 100)).values()]).toEqual([TOPICS.length, TOPICS.length * 3]);

    for (let i = 0; i < 8; i++) await gw.call('PUT', small.entry(`/more/${i}.md`), { content_text: `glacier survey ${i}` });
    await indexed(gw, small.volumeId, TOPICS.length + 8);
    // Within the count's lifetime the volume still reads as small (slower at worst, never wrong) ...
    expect((await search(small, 'semantic')).hnsw).toBe(false);
    // ... and at the next count it is large.
    rt.state.chunkCounts.clear();
    const grown = await search(small, 'semantic', { top_k: 20 });
    expect(grown.hnsw).toBe(true);
    expect(grown.hits).toHaveLength(TOPICS.length + 8);
  });
});
