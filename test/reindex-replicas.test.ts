import { afterAll, beforeAll, expect, it } from 'vitest';
import { jobsIdle, type TestGateway, waitFor } from './helpers/app.js';
import type { ChildGateway } from './helpers/child.js';
import { type EmbeddingsServer, fakeEmbedderEnv, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { subscribe } from './helpers/graphql-ws.js';
import { ADMIN_KEY, call } from './helpers/http.js';
import { type Replicas, startReplicas } from './helpers/replicas.js';

/**
 * Two gateway replicas (one in this process, one a child process) on one database (pglite-socket)
 * and one Redis, both running job workers: a reindex runs once (each entry embedded once) and a
 * subscriber on either replica follows it to the end.
 */
const REDIS_URL = 'redis://127.0.0.1:6379';
const N = 40;

let replicas: Replicas | undefined;
let emb: EmbeddingsServer;
let a: TestGateway;
let b: ChildGateway;

beforeAll(async () => {
  emb = await startEmbeddingsServer(1024);
  replicas = await startReplicas({
    env: { REDIS_URL, ...fakeEmbedderEnv(emb), JOB_CONCURRENCY: '2' },
    maxConnections: 20,
  });
  ({ a, b } = replicas);
}, 120_000);

afterAll(async () => {
  await replicas?.stop();
  await emb?.close();
});

/** reindexProgress on one replica, followed to its end. */
const follow = (base: string, volumeId: string) =>
  subscribe(
    base,
    ADMIN_KEY,
    'subscription($v: ID!) { reindexProgress(volumeId: $v) { status processed total percent } }',
    { v: volumeId },
    {
      keyParam: 'apiKey',
    },
  );

it('writes through both replicas are embedded once; a reindex runs once and both replicas stream it to the end', async () => {
  const ws = (await call(a.url, 'POST', '/v1/orgs/rep/workspaces', { name: 'r' })).body.workspace_id;
  const vol = (await call(b.url, 'POST', `/v1/orgs/rep/workspaces/${ws}/volumes`, { name: 'v', embedding_model_id: 'openai:fake-embed' }))
    .body.volume.volume_id;
  const base = `/v1/orgs/rep/workspaces/${ws}/volumes/${vol}`;
  for (let i = 0; i < N; i += 10) {
    await Promise.all(
      Array.from({ length: 10 }, (_, j) => {
        const n = i + j;
        return call(n % 2 ? a.url : b.url, 'PUT', `${base}/entries/d/${n}.md`, { content_text: `replica document ${n}` });
      }),
    );
  }
  await waitFor(async () => {
    const list = await call(a.url, 'GET', `${base}/list?path=/d&limit=200`);
    return list.body.entries?.length === N && list.body.entries.every((e: any) => e.is_indexed);
  }, 60_000);
  expect(emb.texts).toHaveLength(N);
  expect(new Set(emb.texts).size).toBe(N);

  // A reindex into the same model reuses unchanged vectors, so go to hash vectors and back: the
  // second reindex must embed every entry again, exactly once across both replicas.
  expect((await call(a.url, 'PATCH', base, { embedding_model_id: 'hash-1024' })).status).toBe(200);
  await waitFor(async () => (await call(a.url, 'GET', `${base}/reindex`)).body.reindex_status === 'completed', 60_000);
  await jobsIdle(a);
  expect(await a.app.database.prisma.job.count({ where: { volumeId: vol } })).toBe(0);
  const from = emb.texts.length;
  emb.delayMs = 30;
  // The provider holds the reindex's first request until both subscribers have their first event.
  emb.hold();
  try {
    expect((await call(b.url, 'PATCH', base, { embedding_model_id: 'openai:fake-embed' })).status).toBe(200);
    const onA = follow(a.url, vol);
    const onB = follow(b.url, vol);
    await waitFor(async () => onA.events.length > 0 && onB.events.length > 0, 60_000);
    emb.release();
    const [ea, eb] = await Promise.all([onA.done, onB.done]);
    await Promise.all([onA.close(), onB.close()]);
    expect([...onA.errors, ...onB.errors]).toEqual([]);
    for (const events of [ea, eb]) {
      expect(events.at(-1)).toMatchObject({ status: 'completed', processed: N, total: N, percent: 100 });
      for (let i = 1; i < events.length; i++) expect(events[i].processed).toBeGreaterThanOrEqual(events[i - 1].processed);
    }
  } finally {
    emb.release();
    emb.delayMs = 0;
  }
  expect(emb.texts.slice(from)).toHaveLength(N);
  expect(new Set(emb.texts.slice(from)).size).toBe(N);
  const search = await call(b.url, 'POST', `${base}/search`, { query: 'replica document 17' });
  expect(search.body.results[0].path).toBe('/d/17.md');
}, 180_000);

it('a cancel on one replica and a new reindex on the other never make two runs overlap', async () => {
  const ws = (await call(a.url, 'POST', '/v1/orgs/rep/workspaces', { name: 'r2' })).body.workspace_id;
  const vol = (await call(a.url, 'POST', `/v1/orgs/rep/workspaces/${ws}/volumes`, { name: 'v2' })).body.volume.volume_id;
  const base = `/v1/orgs/rep/workspaces/${ws}/volumes/${vol}`;
  const M = 16;
  await Promise.all(
    Array.from({ length: M }, (_, n) =>
      call(n % 2 ? a.url : b.url, 'PUT', `${base}/entries/e/${n}.md`, { content_text: `overlap probe ${n}` }),
    ),
  );
  await waitFor(async () => {
    const list = await call(a.url, 'GET', `${base}/list?path=/e&limit=200`);
    return list.body.entries?.length === M && list.body.entries.every((e: any) => e.is_indexed);
  }, 60_000);
  const from = emb.texts.length;
  emb.hold();
  try {
    expect((await call(a.url, 'PATCH', base, { embedding_model_id: 'openai:fake-embed' })).status).toBe(200);
    await waitFor(async () => emb.held > 0, 30_000);
    // Whichever replica runs it, a cancel through A and a new start through B while it is stopping.
    expect((await call(a.url, 'POST', `${base}/reindex/cancel`)).body.reindex_status).toBe('cancelling');
    expect((await call(b.url, 'POST', `${base}/reindex`)).status).toBe(202);
    emb.release();
    await waitFor(async () => (await call(b.url, 'GET', `${base}/reindex`)).body.reindex_status === 'completed', 60_000);
  } finally {
    emb.release();
  }
  await jobsIdle(a);
  expect(await a.app.database.prisma.job.count({ where: { volumeId: vol } })).toBe(0);
  const mine = emb.texts.slice(from);
  expect(mine).toHaveLength(M);
  expect(new Set(mine).size).toBe(M);
  expect(await a.app.database.prisma.chunk.count({ where: { volumeId: vol, embedderId: 'openai:fake-embed' } })).toBe(M);
}, 120_000);
