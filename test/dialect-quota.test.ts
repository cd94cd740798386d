import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type EmbeddingsServer, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { call, type HttpResponse } from './helpers/http.js';

// The quota volumes dialect (issue #16, reference peer-quota-volumes.txt): GET /v1/volumes and GET
// /v1/volumes/{id} over the same domain as /v1 and GraphQL, in the reference's shape.

// Every field the dialect sends, in the reference's order (host_id never: deprecated and omitted).
const FIELDS = [
  'id',
  'name',
  'created_at',
  'used_bytes',
  'inode_count',
  'mount_count',
  'max_size_bytes',
  'max_file_count',
  'max_mounts',
  'last_reconciled_at',
  'status',
];
const SUPPORTED = [...FIELDS, 'host_id'];
const MISSING = '01900000-0000-7000-8000-000000000000';
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

let gw: TestGateway;
let emb: EmbeddingsServer;

/** A dialect call: `key` (default the platform key), `org` as X-Org-Id (only sent when given). */
function quota(path: string, opts: { key?: string | null; org?: string; headers?: Record<string, string> } = {}): Promise<HttpResponse> {
  const headers = { ...(opts.org ? { 'X-Org-Id': opts.org } : {}), ...opts.headers };
  return call(gw.url, 'GET', path, undefined, { key: opts.key === undefined ? ADMIN_KEY : opts.key, headers });
}

async function listIds(opts: Parameters<typeof quota>[1], query = ''): Promise<string[]> {
  const res = await quota(`/v1/volumes${query}`, opts);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.map((v: { id: string }) => v.id);
}

async function v1Volume(v: { org: string; workspaceId: string; volumeId: string }) {
  const res = await gw.call('GET', `/v1/orgs/${v.org}/workspaces/${v.workspaceId}/volumes/${v.volumeId}`);
  expect(res.status).toBe(200);
  return res.body;
}

/** The quota dialect's view of a /v1 volume, field by field, by the documented mapping. */
function expectedFromV1(v: any) {
  const status = v.status === 'error' ? 'error' : v.status === 'degraded' ? 'degraded' : v.mount_count > 0 ? 'attached' : 'available';
  return {
    id: v.volume_id,
    name: v.name,
    created_at: v.created_at,
    used_bytes: v.used_bytes,
    inode_count: v.entry_count,
    mount_count: v.mount_count,
    max_size_bytes: v.max_size_bytes,
    max_file_count: v.max_file_count,
    max_mounts: v.max_mounts,
    last_reconciled_at: v.last_reconciled_at,
    status,
  };
}

beforeAll(async () => {
  emb = await startEmbeddingsServer(1024);
  gw = await startGateway({ EMBEDDINGS_URL: emb.url, EMBEDDINGS_MODEL: 'fake-embed', EMBEDDINGS_DIMS: '1024', JOB_POLL_MS: '50' });
});
afterAll(async () => {
  await gw?.stop();
  await emb?.close();
});

describe('GET /v1/volumes and /v1/volumes/{id}: shape and mapping', () => {
  const ORG = 'quota-shape';
  let key: string;
  let a: TestVolume;
  let b: TestVolume;

  beforeAll(async () => {
    key = await createKey(gw, ORG, ['volumes:read']);
    a = await newVolume(gw, ORG, { max_size_bytes: 5_000_000_000, max_file_count: 1000, max_mounts: 3 });
    b = await newVolume(gw, ORG);
  });

  it('lists a bare array of the reference fields, oldest first, mapped from the same volumes /v1 shows', async () => {
    const res = await quota('/v1/volumes', { key });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(Array.isArray(res.body)).toBe(true);
    expect(res.body.map((v: { id: string }) => v.id)).toEqual([a.volumeId, b.volumeId]);
    expect(res.headers.get('x-total-count')).toBe('2');
    for (const item of res.body) expect(Object.keys(item)).toEqual(FIELDS);
    expect(res.body[0]).toEqual(expectedFromV1(await v1Volume(a)));
    expect(res.body[1]).toEqual(expectedFromV1(await v1Volume(b)));
    expect(res.body[0]).toMatchObject({
      used_bytes: 0,
      inode_count: 0,
      mount_count: 0,
      max_size_bytes: 5_000_000_000,
      max_file_count: 1000,
      max_mounts: 3,
      last_reconciled_at: null,
      status: 'available',
    });
    expect(res.body[0].created_at).toMatch(ISO);
    // Unlimited quotas are null.
    expect(res.body[1]).toMatchObject({ max_size_bytes: null, max_file_count: null, max_mounts: null });
  });

  it('gets one volume by id: the same object the list holds', async () => {
    const list = await quota('/v1/volumes', { key });
    const res = await quota(`/v1/volumes/${a.volumeId}`, { key });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(FIELDS);
    expect(res.body).toEqual(list.body[0]);
    expect(res.body).not.toHaveProperty('host_id');
  });

  it('follows usage, mounts and reconciles: used_bytes, inode_count, mount_count, last_reconciled_at, status', async () => {
    await putText(gw, a, '/notes/one.md', 'hello');
    await putText(gw, a, '/notes/two.md', 'hello, world');
    const mount = await gw.call('POST', a.mounts, { app_id: 'reader', path_pattern: '/**', access_level: 'read' });
    expect(mount.status).toBe(201);
    let got = (await quota(`/v1/volumes/${a.volumeId}`, { key })).body;
    expect(got).toMatchObject({ used_bytes: 17, inode_count: 2, mount_count: 1, status: 'attached' });
    expect(got).toEqual(expectedFromV1(await v1Volume(a)));

    const rec = await gw.call('POST', `/v1/orgs/${ORG}/workspaces/${a.workspaceId}/reconcile`, {});
    expect(rec.status).toBe(200);
    got = (await quota(`/v1/volumes/${a.volumeId}`, { key })).body;
    expect(got.last_reconciled_at).toMatch(ISO);
    expect(got.last_reconciled_at).toBe((await v1Volume(a)).last_reconciled_at);

    // Unmounted again: available.
    expect((await gw.call('DELETE', `${a.mounts}/${mount.body.mount.mount_id}`)).status).toBe(200);
    got = (await quota(`/v1/volumes/${a.volumeId}`, { key })).body;
    expect(got).toMatchObject({ mount_count: 0, status: 'available' });
  });

  it('reads a volume created through GraphQL, field for field as GraphQL shows it', async () => {
    const created = await gw.gql(
      `mutation($ws: ID!) { createVolume(workspaceId: $ws, input: {name: "from-graphql", maxSizeBytes: 1073741824, maxMounts: 2}) { id } }`,
      { ws: a.workspaceId },
    );
    expect(created.body.errors).toBeUndefined();
    const id: string = created.body.data.createVolume.id;
    const g = await gw.gql(
      `query($id: ID!) { volume(id: $id) { id name createdAt usedBytes entryCount mountCount maxSizeBytes maxFileCount maxMounts lastReconciledAt status } }`,
      { id },
    );
    const v = g.body.data.volume;
    const res = await quota(`/v1/volumes/${id}`, { key });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: v.id,
      name: 'from-graphql',
      created_at: v.createdAt,
      used_bytes: v.usedBytes,
      inode_count: v.entryCount,
      mount_count: v.mountCount,
      max_size_bytes: 1073741824,
      max_file_count: null,
      max_mounts: 2,
      last_reconciled_at: v.lastReconciledAt,
      status: 'available',
    });
    expect(v.status).toBe('active');
    expect(await listIds({ key })).toContain(id);
  });

  it('accepts the key in X-API-Key too, as every route of the gateway', async () => {
    const res = await quota(`/v1/volumes/${b.volumeId}`, { key: null, headers: { 'X-API-Key': key } });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(b.volumeId);
  });
});

describe('fields mask', () => {
  const ORG = 'quota-fields';
  let key: string;
  let v: TestVolume;

  beforeAll(async () => {
    key = await createKey(gw, ORG, ['volumes:read']);
    v = await newVolume(gw, ORG, { max_mounts: 4 });
  });

  it('keeps only the named fields, in their usual order, on list and get', async () => {
    const list = await quota('/v1/volumes?fields=status,id,max_mounts', { key });
    expect(list.status).toBe(200);
    expect(list.body).toEqual([{ id: v.volumeId, max_mounts: 4, status: 'available' }]);
    const one = await quota(`/v1/volumes/${v.volumeId}?fields=${encodeURIComponent(' name , created_at ')}`, { key });
    expect(one.status).toBe(200);
    expect(Object.keys(one.body)).toEqual(['name', 'created_at']);
    // Repeated, as /v1 allows.
    const repeated = await quota(`/v1/volumes/${v.volumeId}?fields=id&fields=inode_count`, { key });
    expect(repeated.body).toEqual({ id: v.volumeId, inode_count: 0 });
  });

  it('every supported field is accepted; host_id selects nothing (never sent)', async () => {
    const all = await quota(`/v1/volumes/${v.volumeId}?fields=${SUPPORTED.join(',')}`, { key });
    expect(all.status).toBe(200);
    expect(Object.keys(all.body)).toEqual(FIELDS);
    const host = await quota(`/v1/volumes?fields=id,host_id`, { key });
    expect(host.status).toBe(200);
    expect(host.body).toEqual([{ id: v.volumeId }]);
    const only = await quota(`/v1/volumes/${v.volumeId}?fields=host_id`, { key });
    expect(only.status).toBe(200);
    expect(only.body).toEqual({});
  });

  it('an unknown field is a 422 naming each one, with the allowed fields', async () => {
    for (const path of ['/v1/volumes', `/v1/volumes/${v.volumeId}`]) {
      const res = await quota(`${path}?fields=id,entry_count,bogus`, { key });
      expect(res.status, path).toBe(422);
      expect(Object.keys(res.body)).toEqual(['error']);
      expect(res.body.error.code).toBe('validation_failed');
      expect(res.body.error.message).toContain("'entry_count'");
      expect(res.body.error.errors).toEqual([
        {
          in: 'query',
          name: 'fields',
          message: expect.stringContaining("Unknown field 'entry_count'"),
          type: 'field_unknown',
          value: 'id,entry_count,bogus',
          ctx: { field: 'entry_count', allowed: SUPPORTED },
        },
        {
          in: 'query',
          name: 'fields',
          message: expect.stringContaining("Unknown field 'bogus'"),
          type: 'field_unknown',
          value: 'id,entry_count,bogus',
          ctx: { field: 'bogus', allowed: SUPPORTED },
        },
      ]);
    }
  });

  it('an empty mask is a 422 naming fields', async () => {
    const res = await quota('/v1/volumes?fields=', { key });
    expect(res.status).toBe(422);
    expect(res.body.error.errors).toEqual([expect.objectContaining({ in: 'query', name: 'fields', type: 'missing' })]);
  });
});

describe('isolation and access', () => {
  const ORG = 'quota-iso';
  const OTHER = 'quota-other';
  let mine: TestVolume;
  let mounted: TestVolume;
  let shared: TestVolume;
  let deleted: TestVolume;
  let theirs: TestVolume;
  let orgKey: string;

  beforeAll(async () => {
    orgKey = await createKey(gw, ORG, ['volumes:read']);
    mine = await newVolume(gw, ORG);
    mounted = await newVolume(gw, ORG);
    shared = await newVolume(gw, ORG);
    deleted = await newVolume(gw, ORG);
    theirs = await newVolume(gw, OTHER);
    expect((await gw.call('POST', mounted.mounts, { app_id: 'app-q', path_pattern: '/docs/**', access_level: 'read' })).status).toBe(201);
    expect((await gw.call('POST', `${shared.volumeUrl}/make-shared`)).status).toBe(200);
    expect((await gw.call('DELETE', deleted.volumeUrl)).status).toBe(200);
  });

  it('an org key lists its own organisation only; soft-deleted volumes are not listed', async () => {
    const ids = await listIds({ key: orgKey });
    expect(ids).toEqual([mine.volumeId, mounted.volumeId, shared.volumeId]);
    const res = await quota('/v1/volumes', { key: orgKey });
    expect(res.body.find((v: { id: string }) => v.id === mounted.volumeId).status).toBe('attached');
  });

  it("another organisation's volume, a soft-deleted one and an unknown id are 404 in the dialect's error style", async () => {
    for (const id of [theirs.volumeId, deleted.volumeId, MISSING, 'not-a-uuid']) {
      const res = await quota(`/v1/volumes/${id}`, { key: orgKey });
      expect(res.status, id).toBe(404);
      expect(res.body).toEqual({
        error: {
          code: 'not_found',
          message: 'The requested resource was not found',
          details: { resource_type: 'volume', resource_id: id },
        },
      });
    }
    // X-Org-Id does not move an org key out of its organisation.
    const moved = await quota(`/v1/volumes/${theirs.volumeId}`, { key: orgKey, org: OTHER });
    expect(moved.status).toBe(404);
    expect(await listIds({ key: orgKey, org: OTHER })).not.toContain(theirs.volumeId);
    // The deleted volume is still there for /v1's restorable list: only hidden, as everywhere.
    const restorable = await gw.call('GET', `/v1/orgs/${ORG}/workspaces/${deleted.workspaceId}/volumes?status=deleted`);
    expect(restorable.body.volumes.map((v: { volume_id: string }) => v.volume_id)).toEqual([deleted.volumeId]);
  });

  it('an app key sees only the volumes mounted for its app and the shared ones', async () => {
    const appKey = await createKey(gw, ORG, ['volumes:read'], 'app-q');
    expect(await listIds({ key: appKey })).toEqual([mounted.volumeId, shared.volumeId]);
    expect((await quota(`/v1/volumes/${mounted.volumeId}`, { key: appKey })).status).toBe(200);
    expect((await quota(`/v1/volumes/${shared.volumeId}`, { key: appKey })).status).toBe(200);
    const hidden = await quota(`/v1/volumes/${mine.volumeId}`, { key: appKey });
    expect(hidden.status).toBe(404);
    expect(hidden.body.error.code).toBe('not_found');
    expect((await quota('/v1/volumes', { key: appKey })).headers.get('x-total-count')).toBe('2');
  });

  it('a key without volumes:read is 403 naming the permission', async () => {
    const noScope = await createKey(gw, ORG, ['entries:read']);
    for (const path of ['/v1/volumes', `/v1/volumes/${mine.volumeId}`]) {
      const res = await quota(path, { key: noScope });
      expect(res.status, path).toBe(403);
      expect(res.body).toEqual({
        error: {
          code: 'forbidden',
          message: "You don't have permission to perform this action",
          details: expect.objectContaining({ required_permission: 'volumes:read' }),
        },
      });
    }
  });

  it('no credentials, or a bad key, is 401', async () => {
    for (const key of [null, 'vga_not-a-real-key-at-all']) {
      for (const path of ['/v1/volumes', `/v1/volumes/${mine.volumeId}`]) {
        const res = await quota(path, { key });
        expect(res.status, `${key} ${path}`).toBe(401);
        expect(res.body.error.code).toBe('unauthenticated');
        expect(typeof res.body.error.message).toBe('string');
      }
    }
  });

  it('the platform key names the organisation in X-Org-Id; without it, or malformed, 422 naming the header', async () => {
    expect(await listIds({ org: ORG })).toEqual([mine.volumeId, mounted.volumeId, shared.volumeId]);
    expect(await listIds({ org: OTHER })).toEqual([theirs.volumeId]);
    expect((await quota(`/v1/volumes/${theirs.volumeId}`, { org: OTHER })).status).toBe(200);
    expect((await quota(`/v1/volumes/${theirs.volumeId}`, { org: ORG })).status).toBe(404);

    for (const path of ['/v1/volumes', `/v1/volumes/${mine.volumeId}`]) {
      const missing = await quota(path);
      expect(missing.status, path).toBe(422);
      expect(missing.body.error).toMatchObject({ code: 'validation_failed' });
      expect(missing.body.error.errors).toEqual([expect.objectContaining({ in: 'header', name: 'X-Org-Id', type: 'missing' })]);
      const malformed = await quota(path, { org: 'not an org!' });
      expect(malformed.status, path).toBe(422);
      expect(malformed.body.error.errors).toEqual([expect.objectContaining({ in: 'header', name: 'X-Org-Id', value: 'not an org!' })]);
    }
  });

  it('refused input writes nothing: a platform-key call with a bad mask does not bring its organisation into being', async () => {
    const res = await quota('/v1/volumes?fields=nope', { org: 'quota-never-made' });
    expect(res.status).toBe(422);
    expect(await gw.app.database.prisma.organization.count({ where: { id: 'quota-never-made' } })).toBe(0);
    const bad = await quota('/v1/volumes?limit=0', { org: 'quota-never-made' });
    expect(bad.status).toBe(422);
    expect(await gw.app.database.prisma.organization.count({ where: { id: 'quota-never-made' } })).toBe(0);
  });
});

describe('paging extras: at most 1,000, limit and offset, X-Total-Count', () => {
  const ORG = 'quota-paging';
  const N = 205; // more than one page of the domain's list (200)
  let key: string;
  let all: string[];

  beforeAll(async () => {
    key = await createKey(gw, ORG, ['volumes:read']);
    const ws = await gw.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'many' });
    expect(ws.status).toBe(201);
    const base = `/v1/orgs/${ORG}/workspaces/${ws.body.workspace_id}/volumes`;
    for (let i = 0; i < N; i += 8) {
      const batch = Array.from({ length: Math.min(8, N - i) }, (_, j) =>
        gw.call('POST', base, { name: `v${String(i + j).padStart(3, '0')}` }),
      );
      for (const res of await Promise.all(batch)) expect(res.status).toBe(201);
    }
    // /v1's own order by created_at, in its pages of 200.
    all = [];
    let cursor: string | null = null;
    do {
      const page: HttpResponse = await gw.call('GET', `${base}?sort=created_at&limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      all.push(...page.body.volumes.map((v: { volume_id: string }) => v.volume_id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(all).toHaveLength(N);
  }, 120_000);

  it('without limit, every volume (past the domain page size), in created_at order', async () => {
    const res = await quota('/v1/volumes?fields=id', { key });
    expect(res.status).toBe(200);
    expect(res.body.map((v: { id: string }) => v.id)).toEqual(all);
    expect(res.headers.get('x-total-count')).toBe(String(N));
  });

  it('limit and offset take a slice; X-Total-Count stays the whole count', async () => {
    const res = await quota('/v1/volumes?fields=id&limit=3&offset=199', { key });
    expect(res.status).toBe(200);
    expect(res.body.map((v: { id: string }) => v.id)).toEqual(all.slice(199, 202));
    expect(res.headers.get('x-total-count')).toBe(String(N));
    expect(await listIds({ key }, '?fields=id&offset=150&limit=1000')).toEqual(all.slice(150));
    expect(await listIds({ key }, '?fields=id&offset=204')).toEqual(all.slice(204));
    expect(await listIds({ key }, '?fields=id&offset=500')).toEqual([]);
  });

  it('limit outside 1-1000, a negative or non-numeric offset: 422 naming it', async () => {
    for (const [query, name] of [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=ten', 'limit'],
      ['offset=-1', 'offset'],
      ['offset=0x10', 'offset'],
      ['limit=5&limit=6', 'limit'],
    ] as const) {
      const res = await quota(`/v1/volumes?${query}`, { key });
      expect(res.status, query).toBe(422);
      expect(res.body.error.code, query).toBe('validation_failed');
      expect(res.body.error.errors, query).toEqual([expect.objectContaining({ in: 'query', name })]);
    }
  });
});

describe('status: the reference enum from our status and mount count', () => {
  it('degraded while an entry failed indexing (our degraded), whatever its mounts', async () => {
    const ORG = 'quota-degraded';
    const key = await createKey(gw, ORG, ['volumes:read']);
    const v = await newVolume(gw, ORG, { embedding_model_id: 'openai:fake-embed' });
    expect((await gw.call('POST', v.mounts, { app_id: 'x', path_pattern: '/**', access_level: 'read' })).status).toBe(201);
    expect((await quota(`/v1/volumes/${v.volumeId}`, { key })).body.status).toBe('attached');
    emb.poison = 'POISON';
    try {
      await putText(gw, v, '/bad.md', 'this text is POISON to the provider');
      await waitFor(
        async () => (await gw.app.database.prisma.entry.findFirst({ where: { volumeId: v.volumeId, path: '/bad.md' } }))?.indexError,
        60_000,
      );
    } finally {
      emb.poison = undefined;
    }
    expect((await v1Volume(v)).status).toBe('degraded');
    const got = await quota(`/v1/volumes/${v.volumeId}`, { key });
    expect(got.body).toMatchObject({ status: 'degraded', mount_count: 1 });
    expect((await quota('/v1/volumes', { key })).body.map((x: { status: string }) => x.status)).toEqual(['degraded']);
  }, 90_000);

  it('error when the workspace bucket failed to provision (our error)', async () => {
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const { port } = srv.address() as net.AddressInfo;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    const broken = await startGateway({
      S3_ENDPOINT: `http://127.0.0.1:${port}`,
      S3_ACCESS_KEY_ID: 'test',
      S3_SECRET_ACCESS_KEY: 'test-secret',
      SWEEP_INTERVAL_MS: '3600000',
    });
    try {
      const ORG = 'quota-error';
      const ws = await broken.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'unlucky' });
      expect(ws.status).toBe(201);
      const vol = await broken.call('POST', `/v1/orgs/${ORG}/workspaces/${ws.body.workspace_id}/volumes`, { name: 'v' });
      expect(vol.status).toBe(201);
      await waitFor(
        async () => (await broken.call('GET', `/v1/orgs/${ORG}/workspaces/${ws.body.workspace_id}`)).body.bucket_status === 'failed',
        30_000,
      );
      const res = await call(broken.url, 'GET', `/v1/volumes/${vol.body.volume.volume_id}`, undefined, { headers: { 'X-Org-Id': ORG } });
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('error');
      const list = await call(broken.url, 'GET', '/v1/volumes?fields=status', undefined, { headers: { 'X-Org-Id': ORG } });
      expect(list.body).toEqual([{ status: 'error' }]);
    } finally {
      await broken.stop();
    }
  }, 60_000);
});

describe('beside /v1', () => {
  it('shadows nothing of /v1 and is listed in /v1/openapi.json under its tag', async () => {
    const doc = await gw.call('GET', '/v1/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.paths['/v1/volumes'].get).toMatchObject({ operationId: 'quotaListVolumes', tags: ['quota-volumes'] });
    expect(doc.body.paths['/v1/volumes/{id}'].get).toMatchObject({ operationId: 'quotaGetVolume', tags: ['quota-volumes'] });
    expect(doc.body.paths['/v1/orgs/{org_id}/workspaces/{workspace_id}/volumes']).toBeDefined();
    expect((await gw.call('GET', '/v1/orgs/quota-shape/workspaces')).status).toBe(200);
    // Paths below /v1/volumes that are no route stay 404 (with /v1's envelope, as any unknown path).
    const deeper = await quota(`/v1/volumes/${MISSING}/entries`, { org: 'quota-shape' });
    expect(deeper.status).toBe(404);
    const unknown = await gw.call('GET', '/v1/nothing-here');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toBe('RESOURCE_NOT_FOUND');
  });
});
