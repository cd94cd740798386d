import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PGLITE_EXTENSIONS } from '../src/db/pglite-extensions.js';
import { waitFor } from './helpers/app.js';
import { type Child, spawnGateway } from './helpers/child.js';
import { type EmbeddingsServer, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { call } from './helpers/http.js';

/**
 * Kill-and-restart: the gateway (src/main.ts, embedded PGlite in DATA_DIR) is SIGKILLed in the
 * middle of a reindex and started again on the same data. The job, claimed by the dead process,
 * is taken over once its lease runs out and resumes from its checkpoint; no chunk is missing or
 * duplicated.
 */

const children = new Set<Child>();
let dataDir: string;
let emb: EmbeddingsServer;
const N = 30;

beforeAll(async () => {
  dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-restart-'));
  emb = await startEmbeddingsServer(1024);
});
afterAll(async () => {
  await Promise.all([...children].map((c) => c.kill()));
  await emb?.close();
  await fs.rm(dataDir, { recursive: true, force: true });
});

const boot = (env: Record<string, string> = {}, dir = dataDir) =>
  spawnGateway(
    {
      DATA_DIR: dir,
      EMBEDDINGS_URL: emb.url,
      EMBEDDINGS_MODEL: 'fake-embed',
      EMBEDDINGS_DIMS: '1024',
      JOB_LEASE_MS: '1500',
      JOB_POLL_MS: '100',
      // Batches of 16 (the default is 64): the kill lands after the first of the 30 entries' batches.
      REINDEX_BATCH_ENTRIES: '16',
      ...env,
    },
    { children },
  );

/**
 * Waits until the volume's N entries are indexed, changes its model to the provider's, and SIGKILLs
 * the gateway mid-reindex: the provider holds every request after the next 12 texts, so the kill
 * lands mid-run whatever the machine's speed. Returns the entries processed before the kill.
 */
async function killMidModelChange(gw: Awaited<ReturnType<typeof boot>>, base: string): Promise<number> {
  await waitFor(async () => {
    const list = await call(gw.url, 'GET', `${base}/list?path=/docs&limit=200`);
    return list.body.entries?.length === N && list.body.entries.every((e: any) => e.is_indexed);
  }, 60_000);
  // Counted from the texts embedded so far (the server is shared by the tests of this file).
  emb.holdAfter = emb.texts.length + 12;
  expect((await call(gw.url, 'PATCH', base, { embedding_model_id: 'openai:fake-embed' })).status).toBe(200);
  const before = await waitFor(async () => {
    const r = (await call(gw.url, 'GET', `${base}/reindex`)).body;
    return r.reindex_progress.processed >= 8 && emb.held > 0 ? r : undefined;
  }, 60_000);
  await gw.child.kill();
  const processed: number = before.reindex_progress.processed;
  expect(processed).toBeLessThan(N);
  emb.holdAfter = undefined;
  emb.release();
  return processed;
}

it('a reindex interrupted by SIGKILL resumes after restart and completes with every chunk exactly once', async () => {
  let gw = await boot();
  const ws = (await call(gw.url, 'POST', '/v1/orgs/crash/workspaces', { name: 'w' })).body.workspace_id;
  const vol = (await call(gw.url, 'POST', `/v1/orgs/crash/workspaces/${ws}/volumes`, { name: 'v' })).body.volume.volume_id;
  const base = `/v1/orgs/crash/workspaces/${ws}/volumes/${vol}`;
  for (let i = 0; i < N; i += 10) {
    await Promise.all(
      Array.from({ length: 10 }, (_, j) =>
        call(gw.url, 'PUT', `${base}/entries/docs/${i + j}.md`, { content_text: `Crash test document number ${i + j}.` }),
      ),
    );
  }
  const processedBefore = await killMidModelChange(gw, base);

  // The DATA_DIR lock names the dead owner's pid: a new process takes it over at once.
  gw = await boot();
  const seen: number[] = [];
  const done = await waitFor(async () => {
    const r = (await call(gw.url, 'GET', `${base}/reindex`)).body;
    seen.push(r.reindex_progress.processed);
    return r.reindex_status === 'completed' ? r : undefined;
  }, 60_000);
  // Resumed from its checkpoint: never below what was done before the kill.
  expect(Math.min(...seen)).toBeGreaterThanOrEqual(processedBefore);
  expect(done.reindex_progress).toMatchObject({ total: N, processed: N, failed: 0, percent: 100 });
  const search = await call(gw.url, 'POST', `${base}/search`, { query: 'crash test document number 7' });
  expect(search.body.results[0].path).toBe('/docs/7.md');

  gw.child.proc.kill('SIGTERM');
  await gw.child.exited;
  const pg = await PGlite.create(path.join(dataDir, 'pgdata'), { extensions: PGLITE_EXTENSIONS });
  try {
    const { rows } = await pg.query<{ chunks: number; distinct_chunks: number; entries: number; embedders: string[] }>(
      `SELECT count(*)::int AS chunks, count(DISTINCT (entry_id, chunk_index))::int AS distinct_chunks,
              count(DISTINCT entry_id)::int AS entries, array_agg(DISTINCT embedder_id) AS embedders
       FROM chunks WHERE volume_id = $1`,
      [vol],
    );
    expect(rows[0]).toEqual({ chunks: N, distinct_chunks: N, entries: N, embedders: ['openai:fake-embed'] });
    const jobs = await pg.query(`SELECT kind, status FROM jobs WHERE volume_id = $1`, [vol]);
    expect(jobs.rows).toEqual([]);
  } finally {
    await pg.close();
  }
}, 240_000);

it('a bulk reindex killed mid-load resumes in bulk after restart and builds the index it dropped', async () => {
  // REINDEX_BULK_MIN_CHUNKS 20: the model change of 30 one-chunk entries drops the 1,024-dimension
  // HNSW index (it holds no other volume's rows), loads in batches of 2 × 4 entries, then builds it.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-restart-bulk-'));
  const env = { REINDEX_BULK_MIN_CHUNKS: '20', REINDEX_BATCH_ENTRIES: '2' };
  const offline = async <T>(fn: (pg: PGlite) => Promise<T>): Promise<T> => {
    const pg = await PGlite.create(path.join(dir, 'pgdata'), { extensions: PGLITE_EXTENSIONS });
    try {
      return await fn(pg);
    } finally {
      await pg.close();
    }
  };
  const hnsw = (pg: PGlite) =>
    pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'chunks_embedding_1024_hnsw_idx'`);
  try {
    let gw = await boot(env, dir);
    const ws = (await call(gw.url, 'POST', '/v1/orgs/crash/workspaces', { name: 'w' })).body.workspace_id;
    const vol = (await call(gw.url, 'POST', `/v1/orgs/crash/workspaces/${ws}/volumes`, { name: 'v' })).body.volume.volume_id;
    const base = `/v1/orgs/crash/workspaces/${ws}/volumes/${vol}`;
    for (let i = 0; i < N; i++)
      await call(gw.url, 'PUT', `${base}/entries/docs/${i}.md`, { content_text: `Bulk crash document number ${i}.` });
    await killMidModelChange(gw, base);

    // Killed mid-load: the index is gone, and the job says it dropped it.
    await offline(async (pg) => {
      expect((await hnsw(pg)).rows[0]?.n).toBe(0);
      const jobs = await pg.query<{ bulk: number }>(`SELECT (payload->>'bulk')::int AS bulk FROM jobs WHERE volume_id = $1`, [vol]);
      expect(jobs.rows).toEqual([{ bulk: 1024 }]);
    });

    gw = await boot(env, dir);
    const done = await waitFor(async () => {
      const r = (await call(gw.url, 'GET', `${base}/reindex`)).body;
      return r.reindex_status === 'completed' ? r : undefined;
    }, 60_000);
    expect(done.reindex_progress).toMatchObject({ total: N, processed: N, failed: 0, percent: 100 });
    const search = await call(gw.url, 'POST', `${base}/search`, { query: 'bulk crash document number 7', mode: 'semantic' });
    expect(search.body.results[0].path).toBe('/docs/7.md');
    gw.child.proc.kill('SIGTERM');
    await gw.child.exited;

    await offline(async (pg) => {
      expect((await hnsw(pg)).rows[0]?.n).toBe(1);
      const { rows } = await pg.query(
        `SELECT count(*)::int AS chunks, count(DISTINCT entry_id)::int AS entries, array_agg(DISTINCT embedder_id) AS embedders,
                count(*) FILTER (WHERE fresh)::int AS fresh
         FROM chunks WHERE volume_id = $1`,
        [vol],
      );
      expect(rows[0]).toEqual({ chunks: N, entries: N, embedders: ['openai:fake-embed'], fresh: 0 });
    });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 240_000);
