import { afterAll, beforeAll, expect, it } from 'vitest';
import { semanticSql, useHnsw } from '../src/domain/search/sql.js';
import { Prisma } from '../src/generated/prisma/client.js';
import { HashingEmbedder } from '../src/indexing/embedders/hashing.js';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

// Volumes with embedders of different dimensions share the chunks table; each dimension has its own
// partial HNSW index, and the query search builds is one the planner can answer from it.

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ JOB_POLL_MS: '50' });
});
afterAll(() => gw?.stop());

it('searches volumes of 384, 1024 and 1536 dimensions, alone and together', async () => {
  const first = await newVolume(gw, 'org-dims', { embedding_model_id: 'hash-384' });
  const vols = `/v1/orgs/org-dims/workspaces/${first.workspaceId}/volumes`;
  const ids = [first.volumeId];
  for (const model of ['hash-1024', 'hash-1536']) {
    ids.push((await gw.call('POST', vols, { name: model, embedding_model_id: model })).body.volume.volume_id);
  }
  for (const id of ids) {
    for (const n of [1, 2, 3]) {
      const res = await gw.call('PUT', `${vols}/${id}/entries/notes/${n}.md`, { content_text: `lighthouse keeper log number ${n}` });
      expect(res.status).toBe(201);
    }
    await indexed(gw, id, 3);
  }
  const dims = await gw.app.database.prisma.chunk.groupBy({
    by: ['dims'],
    where: { volumeId: { in: ids } },
    _count: true,
    orderBy: { dims: 'asc' },
  });
  expect(dims).toEqual([
    { dims: 384, _count: 3 },
    { dims: 1024, _count: 3 },
    { dims: 1536, _count: 3 },
  ]);
  for (const id of ids) {
    const res = await gw.call('POST', `${vols}/${id}/search`, { query: 'lighthouse keeper log 2', mode: 'semantic', top_k: 3 });
    expect(res.body.results.map((r: any) => r.path)).toHaveLength(3);
    expect(res.body.results[0].path).toBe('/notes/2.md');
  }
  const all = await gw.call('POST', `${vols}/search-all`, { query: 'lighthouse keeper', mode: 'semantic', top_k: 20 });
  expect(new Set(all.body.results.map((r: any) => r.volume_id))).toEqual(new Set(ids));
  expect(all.body.total).toBe(9);
});

it('stores every vector as its embedder made it (sent in binary), new and kept by a reindex alike', async () => {
  const first = await newVolume(gw, 'org-dims-exact', { embedding_model_id: 'hash-384' });
  const vols = `/v1/orgs/org-dims-exact/workspaces/${first.workspaceId}/volumes`;
  const ids = [first.volumeId];
  for (const model of ['hash-1024', 'hash-1536']) {
    ids.push((await gw.call('POST', vols, { name: model, embedding_model_id: model })).body.volume.volume_id);
  }
  const stored = async () =>
    gw.app.database.prisma.$queryRaw<{ content: string; dims: number; embedding: string }[]>`
      SELECT content, dims, embedding::text AS embedding FROM chunks WHERE volume_id = ANY(${ids}) ORDER BY id`;
  const exact = (rows: { content: string; dims: number; embedding: string }[]) => {
    for (const r of rows) {
      const made = new HashingEmbedder(r.dims).embedOne(r.content).map(Math.fround);
      expect((JSON.parse(r.embedding) as number[]).map(Math.fround)).toEqual(made);
    }
  };
  for (const id of ids) {
    for (const n of [1, 2])
      await gw.call('PUT', `${vols}/${id}/entries/notes/${n}.md`, { content_text: `tide table ${n}: high water at ${n * 3} pm` });
    await indexed(gw, id, 2);
  }
  const written = await stored();
  expect(written).toHaveLength(6);
  exact(written);
  // A reindex into the same model keeps each unchanged chunk's vector (read back as text, sent again in binary).
  for (const id of ids) {
    expect((await gw.call('POST', `${vols}/${id}/reindex`, {})).status).toBeLessThan(300);
    await waitFor(async () => (await gw.call('GET', `${vols}/${id}`)).body.reindex_status === 'completed', 20_000);
  }
  const kept = await stored();
  expect(kept.map((r) => r.embedding).sort()).toEqual(written.map((r) => r.embedding).sort());
  exact(kept);
});

it.each([384, 1024, 1536])('the semantic query for %i dimensions can use that dimension’s HNSW index', async (d) => {
  const q = `[${new Array(d).fill(0.01).join(',')}]`;
  const scopes = [{ volumeId: '00000000-0000-7000-8000-000000000000', volumeName: 'v', embedderId: `hash-${d}`, pathRegexes: ['^/a/'] }];
  const plan = await gw.app.database.prisma.$transaction(async (tx) => {
    // The settings search itself runs the query with (no statistics here, as in a fresh embedded database).
    await useHnsw(tx, 10, true, 200);
    return tx.$queryRaw<{ 'QUERY PLAN': string }[]>(Prisma.sql`EXPLAIN ${semanticSql(d, q, scopes, { tags: ['x'] }, 10, 'hnsw')}`);
  });
  expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toContain(`chunks_embedding_${d}_hnsw_idx`);
});
