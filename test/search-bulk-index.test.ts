import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHnswIndex, hnswIndexExists, restoreHnswIndexes } from '../src/domain/search/bulk-index.js';
import { BULK_BATCH_FACTOR, REINDEX } from '../src/domain/search/reindex.js';
import { INDEXED_DIMS } from '../src/domain/search/sql.js';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

// A reindex that writes many chunks into an HNSW index holding few others drops the index, loads
// its rows, and builds the index before the volume switches (src/domain/search/bulk-index.ts).
// REINDEX_BULK_MIN_CHUNKS is 20 here so a volume of 32 one-chunk entries takes that path.

const N = 32;
/** Entries per batch (REINDEX_BATCH_ENTRIES); a bulk run takes BULK_BATCH_FACTOR times as many. */
const BATCH = 2;
const BULK_BATCH = BATCH * BULK_BATCH_FACTOR;
const TOPICS = ['lighthouse keeper', 'orbital mechanics', 'sourdough starter', 'tidal pools', 'glacier retreat', 'violin varnish'];
const textOf = (i: number) => `${TOPICS[i % TOPICS.length]} notes, part ${i}`;

describe('bulk reindex (embedded)', () => {
  let gw: TestGateway;
  const logs: string[] = [];
  beforeAll(async () => {
    gw = await startGateway(
      {
        JOB_POLL_MS: '50',
        LOG_LEVEL: 'info',
        REINDEX_BULK_MIN_CHUNKS: '20',
        REINDEX_BATCH_ENTRIES: String(BATCH),
        // The indexes' own paths: no exact scans of these small volumes.
        SEARCH_EXACT_BELOW_CHUNKS: '0',
        SEARCH_BM25_EXACT_BELOW_CHUNKS: '0',
      },
      { logs },
    );
  });
  afterAll(async () => {
    gw.app.runtime.hooks.beforeReindexBatch = undefined;
    await gw?.stop();
  });

  const db = () => gw.app.database.prisma;
  const rt = () => gw.app.runtime;
  const indexDef = async (dims: number) =>
    (
      await db().$queryRaw<
        { def: string }[]
      >`SELECT indexdef AS def FROM pg_indexes WHERE indexname = ${`chunks_embedding_${dims}_hnsw_idx`}`
    )[0]?.def;
  /** Log lines of HNSW builds, parsed. */
  const builds = () =>
    logs
      .map((l) => JSON.parse(l) as { msg: string; dims?: number; why?: string })
      .filter((l) => l.msg.startsWith('building an HNSW index'));
  const filled = async (model: string) => {
    const v = await newVolume(gw, 'org-bulk', { embedding_model_id: model });
    for (let i = 0; i < N; i += 8)
      await Promise.all(Array.from({ length: 8 }, (_, j) => gw.call('PUT', v.entry(`/t/${i + j}.md`), { content_text: textOf(i + j) })));
    await indexed(gw, v.volumeId, N);
    return v;
  };
  const reindexed = async (v: TestVolume, model?: string) => {
    const res = model
      ? await gw.call('PATCH', v.volumeUrl, { embedding_model_id: model })
      : await gw.call('POST', `${v.volumeUrl}/reindex`, {});
    expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
    return waitFor(async () => {
      const s = (await gw.call('GET', `${v.volumeUrl}/reindex`)).body.reindex_status as string;
      return ['completed', 'failed', 'cancelled'].includes(s) && s;
    }, 30_000);
  };
  const search = async (v: TestVolume, query: string) => {
    const res = await gw.call('POST', `${v.volumeUrl}/search`, { query, mode: 'semantic', top_k: 3 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return (res.body.results as { path: string }[]).map((h) => h.path);
  };
  const rowsOf = (v: TestVolume, embedderId: string) =>
    db().chunk.groupBy({ by: ['fresh'], where: { volumeId: v.volumeId, embedderId }, _count: { _all: true } });

  it('builds the index in code exactly as the migration defines it', async () => {
    for (const dims of INDEXED_DIMS) {
      const migrated = await indexDef(dims);
      expect(migrated, `${dims}`).toBeDefined();
      await db().$executeRawUnsafe(`DROP INDEX "chunks_embedding_${dims}_hnsw_idx"`);
      expect(await buildHnswIndex(rt(), dims, 'test')).toBe(true);
      expect(await indexDef(dims)).toBe(migrated);
      expect(await buildHnswIndex(rt(), dims, 'test')).toBe(false); // there already
    }
  });

  it('a model change of a large volume loads past the index, builds it, then switches', async () => {
    const v = await filled('hash-1024');
    const migrated = await indexDef(384);
    const seen: { processed: number; bulk: number | undefined; indexed: boolean; hits: string[] }[] = [];
    rt().hooks.beforeReindexBatch = async (volumeId, p) => {
      if (volumeId !== v.volumeId) return;
      // Mid-run: the index is gone, and searches still answer from the old model's vectors.
      seen.push({ ...p, indexed: await hnswIndexExists(rt(), 384), hits: await search(v, 'glacier retreat') });
    };
    const before = builds().length;
    expect(await reindexed(v, 'hash-384')).toBe('completed');
    rt().hooks.beforeReindexBatch = undefined;

    expect(seen.length).toBe(N / BULK_BATCH);
    expect(seen.every((s) => s.bulk === 384 && !s.indexed)).toBe(true);
    expect(seen.every((s) => s.hits[0]?.startsWith('/t/') && s.hits.length === 3)).toBe(true);
    expect(builds().slice(before)).toEqual([expect.objectContaining({ dims: 384, why: 'a bulk reindex loaded its rows' })]);
    expect(await indexDef(384)).toBe(migrated);
    // Every new row went straight in (none through the fresh tier), and the old model's are gone.
    expect(await rowsOf(v, 'hash-384')).toEqual([{ fresh: false, _count: { _all: N } }]);
    expect(await rowsOf(v, 'hash-1024')).toEqual([]);
    expect((await search(v, 'glacier retreat'))[0]).toMatch(/^\/t\/(4|10|16|22|28)\.md$/);
    // The plan reads the index that was built.
    const plan = await db().$queryRawUnsafe<{ 'QUERY PLAN': string }[]>(
      `EXPLAIN SELECT id FROM chunks WHERE dims = 384 AND NOT fresh ORDER BY embedding::vector(384) <=> (SELECT embedding FROM chunks WHERE dims = 384 LIMIT 1)::vector(384) LIMIT 5`,
    );
    expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toContain('chunks_embedding_384_hnsw_idx');

    // Into the same model nothing is written again: no bulk build.
    expect(await reindexed(v)).toBe('completed');
    expect(builds().length).toBe(before + 1);
  });

  it('writes through the index when it holds more than a quarter as many other rows', async () => {
    // The volume above holds N rows in the 384 index: this one's N would be under four times that.
    const v = await filled('hash-1024');
    const indexedMidRun: boolean[] = [];
    rt().hooks.beforeReindexBatch = async (volumeId, p) => {
      if (volumeId === v.volumeId) indexedMidRun.push(p.bulk === undefined && (await hnswIndexExists(rt(), 384)));
    };
    const before = builds().length;
    expect(await reindexed(v, 'hash-384')).toBe('completed');
    rt().hooks.beforeReindexBatch = undefined;
    expect(indexedMidRun).toEqual(Array(N / BATCH).fill(true));
    expect(builds().length).toBe(before);
    const rows = await rowsOf(v, 'hash-384');
    expect(rows.reduce((n, r) => n + r._count._all, 0)).toBe(N);
  });

  it('a cancelled bulk reindex builds the index again and keeps the old vectors', async () => {
    const v = await filled('hash-1024');
    let cancelled = false;
    rt().hooks.beforeReindexBatch = async (volumeId, p) => {
      if (volumeId !== v.volumeId || cancelled || p.processed < BULK_BATCH) return;
      expect(p.bulk).toBe(1536);
      expect(await hnswIndexExists(rt(), 1536)).toBe(false);
      cancelled = true;
      expect((await gw.call('POST', `${v.volumeUrl}/reindex/cancel`, {})).status).toBe(200);
    };
    const before = builds().length;
    expect(await reindexed(v, 'hash-1536')).toBe('cancelled');
    rt().hooks.beforeReindexBatch = undefined;
    expect(cancelled).toBe(true);
    expect(await hnswIndexExists(rt(), 1536)).toBe(true);
    expect(builds().slice(before)).toEqual([expect.objectContaining({ dims: 1536, why: 'a bulk reindex stopped' })]);
    expect((await db().volume.findUniqueOrThrow({ where: { id: v.volumeId } })).activeEmbedderId).toBe('hash-1024');
    expect((await search(v, 'violin varnish')).length).toBe(3);
  });

  it('cancelling a queued run that had dropped an index (handed back by a stopping gateway) builds it', async () => {
    const v = await newVolume(gw, 'org-bulk', { embedding_model_id: 'hash-1024' });
    await db().$executeRawUnsafe('DROP INDEX "chunks_embedding_1536_hnsw_idx"');
    await db().job.create({
      data: {
        kind: REINDEX,
        dedupeKey: `${REINDEX}:${v.volumeId}`,
        volumeId: v.volumeId,
        status: 'queued',
        runAt: new Date(Date.now() + 3_600_000),
        payload: { target: 'hash-1536', cursor: null, processed: 0, failed: 0, total: 0, bulk: 1536 },
      },
    });
    const res = await gw.call('POST', `${v.volumeUrl}/reindex/cancel`, {});
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.reindex_status ?? res.body.status).toBe('cancelled');
    await waitFor(() => hnswIndexExists(rt(), 1536));
  });

  it('start-up builds a missing index unless a bulk reindex that dropped it is still to run', async () => {
    await db().$executeRawUnsafe('DROP INDEX "chunks_embedding_1536_hnsw_idx"');
    // A queued reindex recorded as having dropped it: left to that job.
    const v = await newVolume(gw, 'org-bulk', { embedding_model_id: 'hash-1024' });
    const job = await db().job.create({
      data: {
        kind: REINDEX,
        dedupeKey: `test-bulk:${v.volumeId}`,
        volumeId: v.volumeId,
        status: 'queued',
        runAt: new Date(Date.now() + 3_600_000),
        payload: { bulk: 1536 },
      },
    });
    expect(await restoreHnswIndexes(rt(), REINDEX)).toEqual([]);
    expect(await hnswIndexExists(rt(), 1536)).toBe(false);
    await db().job.delete({ where: { id: job.id } });
    expect(await restoreHnswIndexes(rt(), REINDEX)).toEqual([1536]);
    expect(await hnswIndexExists(rt(), 1536)).toBe(true);
  });
});

describe('start-up with an HNSW index missing (embedded)', () => {
  it('builds it in the background: the gateway listens, /readyz says building_indexes, and jobs start once it is built', async () => {
    const logs: string[] = [];
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let reached = false;
    const gw = await startGateway(
      { LOG_LEVEL: 'info', JOB_POLL_MS: '50' },
      {
        logs,
        // As a crash between a bulk reindex's drop and its build leaves the database.
        prepare: (pg) => pg.exec('DROP INDEX "chunks_embedding_384_hnsw_idx"'),
        hooks: {
          beforeIndexRestore: async () => {
            reached = true;
            await held;
          },
        },
      },
    );
    try {
      // The gateway is up while the build waits: liveness answers, readiness says why it is not ready.
      expect(reached).toBe(true);
      expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
      const notReady = await fetch(`${gw.url}/readyz`);
      expect(notReady.status).toBe(503);
      expect(((await notReady.json()) as { status: string }).status).toBe('building_indexes');
      // A write is acknowledged meanwhile; its indexing job runs once the index is built.
      const v = await newVolume(gw, 'org-restore', { embedding_model_id: 'hash-384' });
      expect((await gw.call('PUT', v.entry('/held.md'), { content_text: 'tidal pools at low water' })).status).toBe(201);
      expect(await hnswIndexExists(gw.app.runtime, 384)).toBe(false);

      release();
      await waitFor(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 30_000);
      expect(await hnswIndexExists(gw.app.runtime, 384)).toBe(true);
      await indexed(gw, v.volumeId, 1);
      const built = logs
        .map((l) => JSON.parse(l) as { msg: string; dims?: number; why?: string })
        .filter((l) => l.msg.startsWith('building an HNSW index'));
      expect(built).toEqual([expect.objectContaining({ dims: 384, why: 'missing at start-up' })]);
    } finally {
      release();
      await gw.stop();
    }
  });
});
