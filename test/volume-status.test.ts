import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type EmbeddingsServer, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

// Volume status reflects reality (issue 6 item 7): degraded while indexing has failures, error when
// the workspace bucket failed, deleted when soft-deleted, active otherwise — over REST and GraphQL,
// and filterable in lists.

let gw: TestGateway;
let emb: EmbeddingsServer;
const ORG = 'org-status';

beforeAll(async () => {
  emb = await startEmbeddingsServer(1024);
  // A maintenance sweep every hour: the statuses asserted here are the ones the events themselves set.
  gw = await startGateway({
    EMBEDDINGS_URL: emb.url,
    EMBEDDINGS_MODEL: 'fake-embed',
    EMBEDDINGS_DIMS: '1024',
    JOB_POLL_MS: '50',
    SWEEP_INTERVAL_MS: '3600000',
  });
});
afterAll(async () => {
  await gw?.stop();
  await emb?.close();
});

const status = async (v: TestVolume) => (await gw.call('GET', v.volumeUrl)).body.status as string;
const gqlStatus = async (v: TestVolume) =>
  (await gw.gql(`query($id: ID!) { volume(id: $id) { status } }`, { id: v.volumeId })).body.data.volume.status as string;
const listed = async (v: TestVolume, s: string) =>
  (await gw.call('GET', `/v1/orgs/${ORG}/workspaces/${v.workspaceId}/volumes?status=${s}`)).body.volumes.map(
    (x: { volume_id: string }) => x.volume_id,
  );
const failedEntry = (v: TestVolume, path: string) =>
  waitFor(async () => (await gw.app.database.prisma.entry.findFirst({ where: { volumeId: v.volumeId, path } }))?.indexError, 60_000);

describe('degraded while indexing has failures', () => {
  it('an entry the embedder refuses makes the volume degraded; a reindex once it is fixed makes it active again', async () => {
    const v = await newVolume(gw, ORG, { embedding_model_id: 'openai:fake-embed' });
    await putText(gw, v, '/ok.md', 'ordinary words embed fine');
    await indexed(gw, v.volumeId, 1);
    expect(await status(v)).toBe('active');

    emb.poison = 'POISON';
    try {
      await putText(gw, v, '/bad.md', 'this text is POISON to the provider');
      await failedEntry(v, '/bad.md');
    } finally {
      emb.poison = undefined;
    }
    expect(await status(v)).toBe('degraded');
    expect(await gqlStatus(v)).toBe('degraded');
    expect(await listed(v, 'degraded')).toEqual([v.volumeId]);
    expect(await listed(v, 'active')).toEqual([]);

    // The provider accepts the text now: a reindex indexes it and clears the failure.
    expect((await gw.call('POST', `${v.volumeUrl}/reindex`, {})).status).toBe(202);
    await waitFor(async () => (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed', 30_000);
    expect(await status(v)).toBe('active');
    expect(await listed(v, 'active')).toEqual([v.volumeId]);
    const row = await gw.app.database.prisma.entry.findFirstOrThrow({ where: { volumeId: v.volumeId, path: '/bad.md' } });
    expect(row).toMatchObject({ indexError: null, isIndexed: true });
  }, 90_000);

  it('a reindex that completes with failures leaves it degraded; rewriting the entry fixes it', async () => {
    const v = await newVolume(gw, ORG);
    await putText(gw, v, '/a.md', 'first harmless entry');
    await putText(gw, v, '/b.md', 'second entry, POISON to the provider');
    await indexed(gw, v.volumeId, 2);
    expect(await status(v)).toBe('active');

    // Moving to the provider's model reindexes every entry into it; it refuses one of them.
    emb.poison = 'POISON';
    try {
      expect((await gw.call('PATCH', v.volumeUrl, { embedding_model_id: 'openai:fake-embed' })).status).toBe(200);
      const done = await waitFor(async () => {
        const got = (await gw.call('GET', v.volumeUrl)).body;
        return got.reindex_status === 'completed' ? got : undefined;
      }, 30_000);
      expect(done.reindex_progress).toMatchObject({ processed: 1, failed: 1 });
    } finally {
      emb.poison = undefined;
    }
    expect(await status(v)).toBe('degraded');

    await putText(gw, v, '/b.md', 'second entry, harmless now');
    await waitFor(async () => (await status(v)) === 'active', 30_000);
    expect(await gqlStatus(v)).toBe('active');
  }, 90_000);

  it('a deleted volume is deleted whatever else holds, and gets its real status back on restore', async () => {
    const v = await newVolume(gw, ORG, { embedding_model_id: 'openai:fake-embed' });
    emb.poison = 'POISON';
    try {
      await putText(gw, v, '/bad.md', 'POISON again');
      await failedEntry(v, '/bad.md');
    } finally {
      emb.poison = undefined;
    }
    expect(await status(v)).toBe('degraded');
    expect((await gw.call('DELETE', v.volumeUrl)).status).toBe(200);
    expect(await listed(v, 'deleted')).toEqual([v.volumeId]);
    const restored = await gw.call('POST', `${v.volumeUrl}/restore`);
    expect(restored.body.volume.status).toBe('degraded');
    expect(await status(v)).toBe('degraded');
  }, 90_000);
});

/** A local port nothing listens on: an S3 endpoint that refuses every connection. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

describe('error when the workspace bucket failed', () => {
  let broken: TestGateway | undefined;
  afterAll(async () => {
    await broken?.stop();
  });

  it('volumes of a workspace whose bucket could not be provisioned are in error, and new ones start there', async () => {
    broken = await startGateway({
      S3_ENDPOINT: `http://127.0.0.1:${await closedPort()}`,
      S3_ACCESS_KEY_ID: 'test',
      S3_SECRET_ACCESS_KEY: 'test-secret',
      SWEEP_INTERVAL_MS: '3600000',
    });
    const gwb = broken;
    const ws = await gwb.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'unlucky' });
    expect(ws.status).toBe(201);
    const base = `/v1/orgs/${ORG}/workspaces/${ws.body.workspace_id}/volumes`;
    // Created while the bucket is still pending.
    const early = await gwb.call('POST', base, { name: 'early' });
    expect(early.status).toBe(201);
    expect(['active', 'error']).toContain(early.body.volume.status); // error if the bucket already failed
    // The SDK retries connection errors before giving up.
    await waitFor(
      async () => (await gwb.call('GET', `/v1/orgs/${ORG}/workspaces/${ws.body.workspace_id}`)).body.bucket_status === 'failed',
      30_000,
    );
    expect((await gwb.call('GET', `${base}/${early.body.volume.volume_id}`)).body.status).toBe('error');
    const late = await gwb.call('POST', base, { name: 'late' });
    expect(late.body.volume.status).toBe('error');
    const errors = await gwb.call('GET', `${base}?status=error`);
    expect(errors.body.volumes.map((x: { name: string }) => x.name)).toEqual(['early', 'late']);
    const g = await gwb.gql(`query($id: ID!) { volume(id: $id) { status } }`, { id: late.body.volume.volume_id });
    expect(g.body.data.volume.status).toBe('error');
  }, 60_000);
});
