import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshRoom, freshTierEmpty, freshWriteStarted } from '../src/domain/search/fresh.js';
import { BUSY_POLL_MS, startFreshMerger } from '../src/domain/search/fresh-merger.js';
import { semanticSql, useSearchPlans } from '../src/domain/search/sql.js';
import { Prisma } from '../src/generated/prisma/client.js';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume } from './helpers/entries.js';
import { holdMerger, indexed } from './helpers/search.js';

// The fresh tier (src/domain/search/fresh.ts): new chunks are written outside the HNSW indexes,
// searched exactly, and merged into the indexes in the background. Searches give the same answers
// before and after the merge, and the tier never grows past SEARCH_FRESH_CHUNKS.

const chunkStates = (gw: TestGateway, volumeId: string) =>
  gw.app.database.prisma.chunk.groupBy({ by: ['fresh'], where: { volumeId }, _count: true, orderBy: { fresh: 'asc' } });

const TOPICS = ['lighthouse keeper', 'orbital mechanics', 'sourdough starter', 'tidal pools', 'glacier retreat', 'violin varnish'];

describe('fresh tier', () => {
  let gw: TestGateway;
  let release: () => void = () => undefined;
  beforeAll(async () => {
    // The HNSW and fresh legs are what these tests read, small as their volumes are (search/sizing.ts).
    gw = await startGateway({ JOB_POLL_MS: '50', SEARCH_EXACT_BELOW_CHUNKS: '0' });
  });
  afterAll(async () => {
    release();
    await gw?.stop();
  });

  it('writes new chunks fresh, finds them at once, and finds the same after they are merged', async () => {
    release = holdMerger(gw);
    const v = await newVolume(gw, 'org-fresh', { embedding_model_id: 'hash-1024' });
    for (const [i, topic] of TOPICS.entries()) {
      const res = await gw.call('PUT', `${v.volumeUrl}/entries/notes/${i}.md`, { content_text: `${topic} notes, page ${i}` });
      expect(res.status).toBe(201);
    }
    await indexed(gw, v.volumeId, TOPICS.length);
    expect(await chunkStates(gw, v.volumeId)).toEqual([{ fresh: true, _count: TOPICS.length }]);

    const ask = async (mode: string) =>
      (await gw.call('POST', `${v.volumeUrl}/search`, { query: 'sourdough starter', mode, top_k: 3 })).body.results.map(
        (r: { path: string; score: number }) => [r.path, r.score],
      );
    const before = { semantic: await ask('semantic'), hybrid: await ask('hybrid'), keyword: await ask('keyword') };
    expect(before.semantic[0][0]).toBe('/notes/2.md');
    expect(before.hybrid[0][0]).toBe('/notes/2.md');

    release();
    await waitFor(async () => (await gw.app.database.prisma.chunk.count({ where: { volumeId: v.volumeId, fresh: true } })) === 0);
    expect(await chunkStates(gw, v.volumeId)).toEqual([{ fresh: false, _count: TOPICS.length }]);
    // BM25 counts the merged-away fresh row versions in its corpus statistics until a VACUUM. The
    // gateway vacuums chunks as dead rows come due (maintenance/vacuum.ts): a table this small only
    // once 50 are dead, as autovacuum would. Vacuumed here, so keyword scores compare exactly.
    await gw.app.database.prisma.$executeRawUnsafe('VACUUM chunks');
    expect({ semantic: await ask('semantic'), hybrid: await ask('hybrid'), keyword: await ask('keyword') }).toEqual(before);
  });

  it('ranks fresh chunks among merged ones by their exact distance', async () => {
    const v = await newVolume(gw, 'org-fresh', { embedding_model_id: 'hash-1024' });
    // Enough merged chunks that the HNSW leg fills top_k on its own (no exact fallback).
    for (let i = 0; i < 12; i++) {
      await gw.call('PUT', `${v.volumeUrl}/entries/old/${i}.md`, { content_text: `${TOPICS[i % TOPICS.length]} archive ${i}` });
    }
    await indexed(gw, v.volumeId, 12);
    await waitFor(async () => (await gw.app.database.prisma.chunk.count({ where: { volumeId: v.volumeId, fresh: true } })) === 0);

    release = holdMerger(gw);
    await gw.call('PUT', `${v.volumeUrl}/entries/new.md`, { content_text: 'quasar jets and quasar spectra' });
    await indexed(gw, v.volumeId, 13);
    expect(await chunkStates(gw, v.volumeId)).toEqual([
      { fresh: false, _count: 12 },
      { fresh: true, _count: 1 },
    ]);
    const queries: string[] = [];
    const seen = gw.queries.length;
    const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'quasar spectra', mode: 'semantic', top_k: 10 });
    queries.push(...gw.queries.slice(seen));
    expect(res.body.results).toHaveLength(10);
    expect(res.body.results[0].path).toBe('/new.md');
    // Answered by the one search statement (its HNSW leg and its fresh leg): the HNSW leg had its 10
    // rows, so no exact fallback, a statement of its own, ran.
    const nearest = queries.filter((q) => /<=>/.test(q));
    expect(nearest).toHaveLength(1);
    expect(nearest[0]).toMatch(/::vector\(1024\) <=>/);
    release();
  });

  it('leaves the fresh tier out of searches while it is known empty, and reads it again as a fresh write begins', async () => {
    const rt = gw.app.runtime;
    const v = await newVolume(gw, 'org-fresh', { embedding_model_id: 'hash-1024' });
    for (const [i, topic] of TOPICS.entries())
      await gw.call('PUT', `${v.volumeUrl}/entries/t/${i}.md`, { content_text: `${topic} field notes` });
    await indexed(gw, v.volumeId, TOPICS.length);
    // The search statement of each mode, and whether it read the fresh tier.
    const search = async (query: string, mode: string) => {
      const seen = gw.queries.length;
      const res = await gw.call('POST', `${v.volumeUrl}/search`, { query, mode, top_k: 3 });
      expect(res.status).toBe(200);
      const statements = gw.queries.slice(seen).filter((q) => /ORDER BY/.test(q));
      return { top: res.body.results[0]?.path, readsFresh: statements.some((q) => /AND c\.fresh/.test(q)) };
    };
    // Merged by the gateway's own merger, then counted empty (it counts every couple of seconds).
    await waitFor(async () => freshTierEmpty(rt));
    for (const mode of ['semantic', 'hybrid'])
      expect(await search('glacier retreat', mode), mode).toEqual({ top: '/t/4.md', readsFresh: false });

    // A new fresh chunk: every search reads the tier again from the moment its write begins.
    release = holdMerger(gw);
    await gw.call('PUT', `${v.volumeUrl}/entries/new.md`, { content_text: 'quasar jets and quasar spectra' });
    await indexed(gw, v.volumeId, TOPICS.length + 1);
    expect(freshTierEmpty(rt)).toBe(false);
    for (const mode of ['semantic', 'hybrid'])
      expect(await search('quasar spectra', mode), mode).toEqual({ top: '/new.md', readsFresh: true });
    release();
  });

  it('does not count the tier empty while a fresh write is under way, nor where other processes may write', async () => {
    const rt = gw.app.runtime;
    await waitFor(async () => (await rt.db.chunk.count({ where: { fresh: true } })) === 0);
    const count = () => {
      rt.state.freshCount = undefined; // count now, not from the cache
      return freshRoom(rt);
    };
    // A write that began before the count and had not committed when it ran: its rows may be missed.
    const ended = freshWriteStarted(rt);
    await count();
    expect(freshTierEmpty(rt)).toBe(false);
    ended();
    await count();
    expect(freshTierEmpty(rt)).toBe(true);
    // A write that begins while the count runs.
    const counting = count();
    const during = freshWriteStarted(rt);
    await counting;
    expect(freshTierEmpty(rt)).toBe(false);
    during();
    await count();
    expect(freshTierEmpty(rt)).toBe(true);
    // A server's database has other writers (replicas): its tier is never taken for empty.
    expect(freshTierEmpty({ ...rt, settings: { ...rt.settings, soleWriter: false } })).toBe(false);
  });

  it('plans the fresh leg on the fresh index and the merged leg on the HNSW index', async () => {
    const q = `[${new Array(1024).fill(0.01).join(',')}]`;
    const scopes = [{ volumeId: '00000000-0000-7000-8000-000000000000', volumeName: 'v', embedderId: 'hash-1024', pathRegexes: null }];
    const explain = (scan: 'hnsw' | 'fresh') =>
      gw.app.database.prisma.$transaction(async (tx) => {
        await useSearchPlans(tx, { hnsw: { limit: 10, iterative: true, efSearch: 200 } });
        const rows = await tx.$queryRaw<{ 'QUERY PLAN': string }[]>(Prisma.sql`EXPLAIN ${semanticSql(1024, q, scopes, {}, 10, scan)}`);
        return rows.map((r) => r['QUERY PLAN']).join('\n');
      });
    expect(await explain('hnsw')).toContain('chunks_embedding_1024_hnsw_idx');
    const fresh = await explain('fresh');
    expect(fresh).toContain('chunks_fresh_idx');
    expect(fresh).not.toContain('hnsw_idx');
  });
  it('while indexing is busy, wake-ups do not make the merger look more often than every BUSY_POLL_MS', async () => {
    const rt = gw.app.runtime;
    release = holdMerger(gw); // the gateway's own merger leaves the fresh chunk below alone
    const v = await newVolume(gw, 'org-busy', { embedding_model_id: 'hash-1024' });
    await gw.call('PUT', `${v.volumeUrl}/entries/a.md`, { content_text: 'tidal pools' });
    await indexed(gw, v.volumeId, 1);
    // Indexing is busy: a running index job that no worker will finish meanwhile.
    const busy = await rt.db.job.create({
      data: { kind: 'index_entry', status: 'running', lockedBy: 'test', lockedUntil: new Date(Date.now() + 60_000) },
    });
    // A second merger whose database counts its looks at the job queue (each look also counts the tier).
    let looks = 0;
    const db = new Proxy(rt.db, {
      get(target, key) {
        const value = Reflect.get(target, key);
        if (key === '$queryRaw')
          return (sql: TemplateStringsArray, ...values: unknown[]) => {
            if (sql.join('?').includes('FROM jobs')) looks++;
            return target.$queryRaw(sql, ...values);
          };
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const ownWake = rt.state.wakeFreshMerger;
    const merger = startFreshMerger({ ...rt, db }, 60_000);
    try {
      await waitFor(async () => looks === 1, 5_000);
      // Indexing wakes the merger after every batch: forty batches in quick succession.
      const t0 = performance.now();
      for (let i = 0; i < 40; i++) {
        merger.wake();
        await delay(5);
      }
      const elapsed = performance.now() - t0;
      // Answering every wake would have looked ~40 times.
      expect(looks - 1).toBeLessThanOrEqual(Math.ceil(elapsed / BUSY_POLL_MS) + 1);
    } finally {
      await merger.stop();
      rt.state.wakeFreshMerger = ownWake;
      await rt.db.job.delete({ where: { id: busy.id } });
      release();
    }
  });
});

describe('fresh tier cap', () => {
  let gw: TestGateway;
  let release: () => void = () => undefined;
  beforeAll(async () => {
    // One job worker: the cap is checked per indexing batch, so concurrent batches may each fill the room left.
    gw = await startGateway({ JOB_POLL_MS: '50', JOB_CONCURRENCY: '1', SEARCH_FRESH_CHUNKS: '3', SEARCH_EXACT_BELOW_CHUNKS: '0' });
  });
  afterAll(async () => {
    release();
    await gw?.stop();
  });

  it('keeps at most SEARCH_FRESH_CHUNKS chunks fresh; the rest go straight into the index, all searchable', async () => {
    release = holdMerger(gw);
    const v = await newVolume(gw, 'org-cap', { embedding_model_id: 'hash-1024' });
    for (const [i, topic] of TOPICS.entries()) {
      await gw.call('PUT', `${v.volumeUrl}/entries/notes/${i}.md`, { content_text: `${topic} notes, page ${i}` });
    }
    await indexed(gw, v.volumeId, TOPICS.length);
    expect(await chunkStates(gw, v.volumeId)).toEqual([
      { fresh: false, _count: TOPICS.length - 3 },
      { fresh: true, _count: 3 },
    ]);
    for (const [i, topic] of TOPICS.entries()) {
      const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: topic, mode: 'semantic', top_k: 1 });
      expect(res.body.results[0].path).toBe(`/notes/${i}.md`);
    }
    release();
  });

  it('writes nothing fresh when SEARCH_FRESH_CHUNKS is 0', async () => {
    const off = await startGateway({ JOB_POLL_MS: '50', SEARCH_FRESH_CHUNKS: '0' });
    try {
      const v = await newVolume(off, 'org-off', { embedding_model_id: 'hash-1024' });
      await off.call('PUT', `${v.volumeUrl}/entries/a.md`, { content_text: 'tidal pools' });
      await indexed(off, v.volumeId, 1);
      expect(await chunkStates(off, v.volumeId)).toEqual([{ fresh: false, _count: 1 }]);
    } finally {
      await off.stop();
    }
  });
});
