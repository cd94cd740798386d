import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { call, request, streamRequest } from './helpers/http.js';

// The project-volumes dialect (/api/v1/volumes, /work/shared/reference/peer-project-volumes.txt) over
// real HTTP: every route, its fields and statuses, the same volume through /v1 and GraphQL, isolation
// and bad input.

const BASE = '/api/v1/volumes';
// The reference's field lists, in its order.
const VOLUME_FIELDS = (
  'id label name description status type volumeType sizeGb mountPath organizationId owner ownerId projectId ' +
  'isShared shared sharedWith createdAt updatedAt'
).split(' ');
const LIST_FIELDS =
  'id label name description status type volumeType sizeGb mountPath organizationId ownerId projectId isShared createdAt updatedAt'.split(
    ' ',
  );
const SHARED_FIELDS = 'id label name description status type sizeGb organizationId ownerId isShared createdAt updatedAt'.split(' ');
const SECONDS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const MISSING = '01900000-0000-7000-8000-000000000000';
const GB = 1_000_000_000;

let gw: TestGateway;
let ws: string; // a project (workspace) of acme
let ws2: string; // another project of acme
let otherWs: string; // a project of another organisation
let rw: { key: string; id: string; name: string }; // volumes:read + volumes:write
let ro: string; // volumes:read only
let noRead: string; // no volumes scope at all
let otherKey: string; // volumes:read + write in org "other"

/** A call in the reference's style: the key in X-API-Key (null: no credentials at all). */
function api(method: string, path: string, body?: unknown, key: string | null = rw.key, headers: Record<string, string> = {}) {
  return call(gw.url, method, `${BASE}${path}`, body, { key: null, headers: key === null ? headers : { 'x-api-key': key, ...headers } });
}

async function orgKey(org: string, name: string, scopes: string[], appId?: string) {
  const res = await gw.call('POST', `/v1/orgs/${org}/api-keys`, { name, scopes, ...(appId ? { app_id: appId } : {}) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { key: res.body.api_key as string, id: res.body.key.key_id as string, name };
}

async function workspace(org: string, name: string): Promise<string> {
  const res = await gw.call('POST', `/v1/orgs/${org}/workspaces`, { name });
  expect(res.status).toBe(201);
  return res.body.workspace_id;
}

async function create(body: Record<string, unknown>, key = rw.key): Promise<string> {
  const res = await api('POST', '', body, key);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.volumeId;
}

const v1Url = (id: string, wsId = ws, org = 'acme') => `/v1/orgs/${org}/workspaces/${wsId}/volumes/${id}`;

/** Rows of an organisation's volumes, straight from SQL (what was really written). */
async function volumeRows(org: string): Promise<number> {
  const rows = await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
    'SELECT count(*)::int AS n FROM volumes WHERE org_id = $1',
    org,
  );
  return rows[0]?.n ?? -1;
}

/** The field names a 422 body lists, as "location:field". */
const fieldsOf = (body: any) => body.details.fields.map((f: { location: string; field?: string }) => `${f.location}:${f.field ?? ''}`);

beforeAll(async () => {
  gw = await startGateway({ JOB_POLL_MS: '50' });
  ws = await workspace('acme', 'main');
  ws2 = await workspace('acme', 'second');
  otherWs = await workspace('other', 'theirs');
  rw = await orgKey('acme', 'project-writer', ['volumes:read', 'volumes:write']);
  ro = (await orgKey('acme', 'reader', ['volumes:read'])).key;
  noRead = (await orgKey('acme', 'entries-only', ['entries:read'])).key;
  otherKey = (await orgKey('other', 'other-writer', ['volumes:read', 'volumes:write'])).key;
});
afterAll(async () => {
  await gw?.stop();
});

describe('project volumes: create and get', () => {
  it('POST answers 201 {volumeId}; GET answers the reference object, fields in its order', async () => {
    const res = await api('POST', '', {
      projectId: ws,
      label: 'Training Data',
      sizeGB: 64,
      description: 'Dataset for ML model training',
      type: 'model',
      mountPath: '/data/training',
    });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body)).toEqual(['volumeId']);
    const id = res.body.volumeId;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const got = await api('GET', `/${id}`);
    expect(got.status).toBe(200);
    expect(Object.keys(got.body)).toEqual(VOLUME_FIELDS);
    expect(got.body).toMatchObject({
      id,
      label: 'Training Data',
      name: 'training-data',
      description: 'Dataset for ML model training',
      status: 'available',
      type: 'model',
      volumeType: 'persistent',
      sizeGb: 64,
      mountPath: '/data/training',
      organizationId: 'acme',
      owner: { id: `key:${rw.id}`, name: 'project-writer', email: null },
      ownerId: `key:${rw.id}`,
      projectId: ws,
      isShared: false,
      shared: false,
      sharedWith: [],
    });
    expect(got.body.createdAt).toMatch(SECONDS);
    expect(got.body.updatedAt).toMatch(SECONDS);
  });

  it('the same volume through /v1 and GraphQL: sizeGB x 10^9 bytes, label, type, mount path, project, owner', async () => {
    const id = await create({ projectId: ws, label: 'Cross Check', sizeGB: 3, type: 'workspace', mountPath: '/mnt/cross' });
    const dialect = (await api('GET', `/${id}`)).body;
    const v1 = await gw.call('GET', v1Url(id));
    expect(v1.status).toBe(200);
    expect(v1.body).toMatchObject({
      volume_id: id,
      workspace_id: ws,
      org_id: 'acme',
      name: 'cross-check',
      label: 'Cross Check',
      volume_type: 'workspace',
      mount_path: '/mnt/cross',
      max_size_bytes: 3 * GB,
      description: null,
      is_shared: false,
      created_by: `key:${rw.id}`,
      owner: { id: `key:${rw.id}`, name: 'project-writer' },
    });
    expect(dialect.createdAt).toBe(`${v1.body.created_at.slice(0, 19)}Z`);
    expect(dialect.updatedAt).toBe(`${v1.body.updated_at.slice(0, 19)}Z`);
    const gql = await gw.gql(
      'query($id: ID!) { volume(id: $id) { id name label volumeType mountPath maxSizeBytes workspaceId orgId isShared owner { id name } } }',
      { id },
    );
    expect(gql.body.errors).toBeUndefined();
    expect(gql.body.data.volume).toEqual({
      id,
      name: 'cross-check',
      label: 'Cross Check',
      volumeType: 'workspace',
      mountPath: '/mnt/cross',
      maxSizeBytes: 3 * GB,
      workspaceId: ws,
      orgId: 'acme',
      isShared: false,
      owner: { id: `key:${rw.id}`, name: 'project-writer' },
    });
  });

  it('defaults: type data, mountPath /data/<label-slug>, description null; names are the label slug, suffixed when taken', async () => {
    const a = await create({ projectId: ws, label: 'Données 2024!', sizeGB: 1 });
    const b = await create({ projectId: ws, label: 'données  2024', sizeGB: 2 });
    const c = await create({ projectId: ws, label: 'Données 2024!', sizeGB: 1 });
    const elsewhere = await create({ projectId: ws2, label: 'Données 2024!', sizeGB: 1 });
    const [va, vb, vc, ve] = await Promise.all([a, b, c, elsewhere].map(async (id) => (await api('GET', `/${id}`)).body));
    expect(va).toMatchObject({
      name: 'donnees-2024',
      label: 'Données 2024!',
      type: 'data',
      mountPath: '/data/donnees-2024',
      description: null,
    });
    expect(vb).toMatchObject({ name: 'donnees-2024-2', label: 'données  2024', mountPath: '/data/donnees-2024' });
    expect(vc).toMatchObject({ name: 'donnees-2024-3' });
    expect(ve).toMatchObject({ name: 'donnees-2024', projectId: ws2 });
  });

  it('concurrent creates with one label all succeed, each under its own name', async () => {
    const ids = await Promise.all(Array.from({ length: 4 }, () => create({ projectId: ws, label: 'Race Label', sizeGB: 1 })));
    const names = await Promise.all(ids.map(async (id) => (await api('GET', `/${id}`)).body.name));
    expect(names.sort()).toEqual(['race-label', 'race-label-2', 'race-label-3', 'race-label-4']);
  });

  it('a volume made in /v1 or GraphQL reads here: sizeGb in GB (null when unlimited), its type and label', async () => {
    const unlimited = await gw.call('POST', `/v1/orgs/acme/workspaces/${ws}/volumes`, { name: 'from-v1', description: 'made in v1' });
    const u = await api('GET', `/${unlimited.body.volume.volume_id}`);
    expect(u.status).toBe(200);
    expect(u.body).toMatchObject({
      name: 'from-v1',
      label: 'from-v1',
      description: 'made in v1',
      sizeGb: null,
      type: 'data',
      mountPath: '/data/from-v1',
      ownerId: 'admin',
      owner: { id: 'admin', name: 'platform admin', email: null },
    });
    const gql = await gw.gql(
      'mutation($ws: ID!) { createVolume(workspaceId: $ws, input: {name: "from-gql", label: "From GraphQL", maxSizeBytes: 1500000000, volumeType: model}) { id } }',
      { ws },
    );
    expect(gql.body.errors).toBeUndefined();
    const g = await api('GET', `/${gql.body.data.createVolume.id}`);
    expect(g.body).toMatchObject({ name: 'from-gql', label: 'From GraphQL', sizeGb: 1.5, type: 'model', projectId: ws });
  });

  it('unknown and malformed ids are 404 NOT_FOUND in the dialect error style', async () => {
    for (const id of [MISSING, 'not-a-uuid']) {
      const res = await api('GET', `/${id}`);
      expect(res.status).toBe(404);
      expect(res.body).toEqual({
        code: 'NOT_FOUND',
        message: 'The requested resource was not found',
        details: { resourceType: 'volume', resourceId: id },
      });
    }
  });
});

describe('project volumes: bad input on create', () => {
  it('each bad field is a 422 VALIDATION_FAILED naming it as sent, and nothing is written', async () => {
    const before = await volumeRows('acme');
    const cases: [Record<string, unknown>, string[]][] = [
      [{}, ['body:projectId', 'body:label', 'body:sizeGB']],
      [{ projectId: ws, label: 'x', sizeGB: '64' }, ['body:sizeGB']],
      [{ projectId: ws, label: 'x', sizeGB: 0 }, ['body:sizeGB']],
      [{ projectId: ws, label: 'x', sizeGB: 1.5 }, ['body:sizeGB']],
      [{ projectId: ws, label: 'x', sizeGB: 10_000_000 }, ['body:sizeGB']],
      [{ projectId: ws, label: '   ', sizeGB: 1 }, ['body:label']],
      [{ projectId: ws, label: 'x'.repeat(129), sizeGB: 1 }, ['body:label']],
      [{ projectId: ws, label: 'two\nlines', sizeGB: 1 }, ['body:label']],
      [{ projectId: ws, label: 'x', sizeGB: 1, type: 'shared' }, ['body:type']],
      [{ projectId: ws, label: 'x', sizeGB: 1, mountPath: 'relative' }, ['body:mountPath']],
      [{ projectId: ws, label: 'x', sizeGB: 1, mountPath: '/' }, ['body:mountPath']],
      [{ projectId: ws, label: 'x', sizeGB: 1, description: 'd'.repeat(2001) }, ['body:description']],
      [{ projectId: 42, label: 'x', sizeGB: 1 }, ['body:projectId']],
    ];
    for (const [body, fields] of cases) {
      const res = await api('POST', '', body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(fieldsOf(res.body), JSON.stringify(body)).toEqual(fields);
      expect(res.body.message).toContain(fields[0]?.split(':')[1]);
    }
    expect(await volumeRows('acme')).toBe(before);
  });

  it('a project that is not there, or is another organisation’s, is a 422 naming projectId', async () => {
    const before = await volumeRows('acme');
    const beforeOther = await volumeRows('other');
    for (const projectId of [MISSING, otherWs, 'nope']) {
      const res = await api('POST', '', { projectId, label: 'Lost', sizeGB: 1 });
      expect(res.status).toBe(422);
      expect(res.body.details.fields).toEqual([{ field: 'projectId', location: 'body', message: 'Project not found', type: 'not_found' }]);
    }
    expect(await volumeRows('acme')).toBe(before);
    expect(await volumeRows('other')).toBe(beforeOther);
  });

  it('a body that is not JSON, or not sent as JSON, is a 422 naming the body', async () => {
    const bad = await api('POST', '', '{"projectId": ');
    expect(bad.status).toBe(422);
    expect(bad.body.details.fields).toEqual([{ location: 'body', message: 'JSON decode error', type: 'json_invalid' }]);
    const text = await request(gw.url, 'POST', BASE, {
      body: JSON.stringify({ projectId: ws, label: 'x', sizeGB: 1 }),
      key: null,
      headers: { 'x-api-key': rw.key, 'content-type': 'text/plain' },
    });
    expect(text.status).toBe(422);
    expect(text.body.details.fields[0]).toMatchObject({ location: 'body', type: 'content_type' });
  });

  it('a body over 1 MiB is refused before it is read, and nothing is written', async () => {
    const before = await volumeRows('acme');
    const huge = Buffer.from(JSON.stringify({ projectId: ws, label: 'Huge', sizeGB: 1, description: 'x'.repeat(1024 * 1024 + 1) }));
    // Its own connection (agent: false): the gateway answers before the body is sent and closes it.
    const res = await streamRequest(
      gw,
      'POST',
      BASE,
      { contentType: 'application/json', length: huge.length, stream: () => Readable.from([huge]) },
      { 'x-api-key': rw.key },
      null,
    );
    // shared.ts answers 422 (loc body, type too_large) today; /v1 answers 413 PAYLOAD_TOO_LARGE.
    expect([413, 422]).toContain(res.status);
    expect(res.body.code).toBe(res.status === 413 ? 'PAYLOAD_TOO_LARGE' : 'VALIDATION_FAILED');
    expect(await volumeRows('acme')).toBe(before);
  });
});

describe('project volumes: list', () => {
  let org: string;
  let key: string;
  let p1: string;
  let p2: string;
  const ids: string[] = [];

  beforeAll(async () => {
    org = 'paging';
    p1 = await workspace(org, 'p1');
    p2 = await workspace(org, 'p2');
    key = (await orgKey(org, 'pager', ['volumes:read', 'volumes:write'])).key;
    // 25 volumes in p1 (data, labels Vol 00..24), and 3 in p2 of other types.
    for (let i = 0; i < 25; i++) ids.push(await create({ projectId: p1, label: `Vol ${String(i).padStart(2, '0')}`, sizeGB: 1 }, key));
    await create({ projectId: p2, label: 'Model weights', sizeGB: 5, type: 'model', description: 'checkpoint store' }, key);
    await create({ projectId: p2, label: 'Scratch', sizeGB: 1, type: 'workspace' }, key);
    const shared = await create({ projectId: p2, label: 'Common', sizeGB: 1 }, key);
    expect((await api('POST', `/${shared}/make-shared`, undefined, key)).status).toBe(200);
  });

  it('answers {count, limit, offset, volumes}: 20 by default, items in the reference list shape', async () => {
    const res = await api('GET', '', undefined, key);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['count', 'limit', 'offset', 'volumes']);
    expect(res.body).toMatchObject({ count: 28, limit: 20, offset: 0 });
    expect(res.body.volumes).toHaveLength(20);
    for (const item of res.body.volumes) expect(Object.keys(item)).toEqual(LIST_FIELDS);
    // Creation order without a sort.
    expect(res.body.volumes.map((v: { id: string }) => v.id)).toEqual(ids.slice(0, 20));
    const full = (await api('GET', `/${ids[0]}`, undefined, key)).body;
    const { owner: _o, shared: _s, sharedWith: _w, ...listed } = full;
    expect(res.body.volumes[0]).toEqual(listed);
  });

  it('offset and limit page through; a limit above 100 is served as 100 and says so', async () => {
    const page2 = await api('GET', '?offset=20&limit=20', undefined, key);
    expect(page2.body).toMatchObject({ count: 28, limit: 20, offset: 20 });
    expect(page2.body.volumes).toHaveLength(8);
    expect(page2.body.volumes.slice(0, 5).map((v: { id: string }) => v.id)).toEqual(ids.slice(20));
    const big = await api('GET', '?limit=500', undefined, key);
    expect(big.status).toBe(200);
    expect(big.body).toMatchObject({ count: 28, limit: 100, offset: 0 });
    expect(big.body.volumes).toHaveLength(28);
    const three = await api('GET', '?limit=3&offset=1', undefined, key);
    expect(three.body.volumes.map((v: { id: string }) => v.id)).toEqual(ids.slice(1, 4));
  });

  it('sort: createdAt:desc, label:asc, name (ascending by default)', async () => {
    const desc = await api('GET', '?sort=createdAt:desc&limit=3', undefined, key);
    expect(desc.status).toBe(200);
    expect(desc.body.volumes.map((v: { label: string }) => v.label)).toEqual(['Common', 'Scratch', 'Model weights']);
    const byLabel = await api('GET', '?sort=label:asc&limit=2', undefined, key);
    expect(byLabel.body.volumes.map((v: { label: string }) => v.label)).toEqual(['Common', 'Model weights']);
    const byName = await api('GET', '?sort=name&limit=1', undefined, key);
    expect(byName.body.volumes[0].name).toBe('common');
    const updated = await api('GET', '?sort=updatedAt:desc&limit=1', undefined, key);
    expect(updated.status).toBe(200);
  });

  it('search (label, name, description), type (data, model, workspace, shared) and projectId filter', async () => {
    const labels = async (query: string) => {
      const res = await api('GET', `?${query}&limit=100`, undefined, key);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.count).toBe(res.body.volumes.length);
      return res.body.volumes.map((v: { label: string }) => v.label).sort();
    };
    expect(await labels('search=CHECKPOINT')).toEqual(['Model weights']); // description
    expect(await labels('search=vol%2024')).toEqual(['Vol 24']); // label
    expect(await labels('search=model-w')).toEqual(['Model weights']); // name
    expect(await labels('type=model')).toEqual(['Model weights']);
    expect(await labels('type=workspace')).toEqual(['Scratch']);
    expect(await labels('type=shared')).toEqual(['Common']);
    expect((await labels('type=data')).length).toBe(26);
    expect(await labels(`projectId=${p2}`)).toEqual(['Common', 'Model weights', 'Scratch']);
    expect(await labels(`projectId=${p2}&type=model`)).toEqual(['Model weights']);
    expect(await labels(`projectId=${MISSING}`)).toEqual([]);
  });

  it('bad query parameters are 422 naming them; an unknown sort lists the ones there are', async () => {
    const cases: [string, string][] = [
      ['sort=size:desc', 'sort'],
      ['sort=createdAt:down', 'sort'],
      ['sort=created_at', 'sort'],
      ['type=bogus', 'type'],
      ['limit=0', 'limit'],
      ['limit=ten', 'limit'],
      ['offset=-1', 'offset'],
      ['offset=1.5', 'offset'],
      [`search=${'s'.repeat(201)}`, 'search'],
      ['limit=1&limit=2', 'limit'],
    ];
    for (const [query, field] of cases) {
      const res = await api('GET', `?${query}`, undefined, key);
      expect(res.status, query).toBe(422);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(res.body.details.fields[0], query).toMatchObject({ location: 'query', field });
    }
    const unknown = await api('GET', '?sort=size:desc', undefined, key);
    expect(unknown.body.message).toContain("'createdAt:desc'");
    const shared = await api('GET', '/shared?sort=bogus', undefined, key);
    expect(shared.status).toBe(422);
    expect(shared.body.details.fields[0]).toMatchObject({ location: 'query', field: 'sort' });
  });

  it('GET /shared lists the shared volumes of the organisation in the reference shared-list shape', async () => {
    const res = await api('GET', '/shared', undefined, key);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['count', 'limit', 'offset', 'volumes']);
    expect(res.body).toMatchObject({ count: 1, limit: 20, offset: 0 });
    expect(Object.keys(res.body.volumes[0])).toEqual(SHARED_FIELDS);
    expect(res.body.volumes[0]).toMatchObject({
      label: 'Common',
      name: 'common',
      isShared: true,
      type: 'data',
      sizeGb: 1,
      organizationId: org,
    });
    expect((await api('GET', '/shared?search=nothing-like-it', undefined, key)).body).toMatchObject({ count: 0, volumes: [] });
    expect((await api('GET', '/shared?search=comm&limit=5', undefined, key)).body).toMatchObject({ count: 1, limit: 5 });
    // Another organisation's shared volumes are never listed.
    const acme = await api('GET', '/shared?limit=100');
    expect(acme.body.volumes.every((v: { organizationId: string }) => v.organizationId === 'acme')).toBe(true);
  });
});

describe('project volumes: update', () => {
  it('PUT changes label, description and mountPath only, answers the full object; /v1 sees it', async () => {
    const id = await create({ projectId: ws, label: 'Before', sizeGB: 8, description: 'old' });
    const before = (await gw.call('GET', v1Url(id))).body;
    const res = await api('PUT', `/${id}`, {
      label: 'Updated Training Data',
      description: 'Updated description',
      mountPath: '/data/updated',
    });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(VOLUME_FIELDS);
    expect(res.body).toMatchObject({
      id,
      label: 'Updated Training Data',
      name: 'before',
      description: 'Updated description',
      mountPath: '/data/updated',
      sizeGb: 8,
    });
    const v1 = (await gw.call('GET', v1Url(id))).body;
    expect(v1).toMatchObject({ label: 'Updated Training Data', mount_path: '/data/updated', name: 'before', version: before.version + 1 });
    expect(v1.modified_by).toBe(`key:${rw.id}`);
    // Only what is given changes; null clears the description.
    const partial = await api('PUT', `/${id}`, { description: null });
    expect(partial.body).toMatchObject({ label: 'Updated Training Data', description: null, mountPath: '/data/updated' });
  });

  it('protected fields are ignored, so a GET body can be sent back changed', async () => {
    const id = await create({ projectId: ws, label: 'Protected', sizeGB: 2 });
    const original = (await api('GET', `/${id}`)).body;
    const res = await api('PUT', `/${id}`, {
      ...original,
      _id: 'forged',
      id: MISSING,
      owner: { id: 'someone', name: 'Mallory', email: 'm@example.com' },
      ownerId: 'someone',
      createdAt: '2000-01-01T00:00:00Z',
      organizationId: 'other',
      projectId: ws2,
      name: 'renamed',
      type: 'model',
      sizeGb: 1,
      status: 'error',
      isShared: true,
      shared: true,
      sharedWith: ['x'],
      volumeType: 'ephemeral',
      label: 'Protected, relabelled',
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const after = (await api('GET', `/${id}`)).body;
    const { label, updatedAt, ...rest } = after;
    const { label: _l, updatedAt: _u, ...originalRest } = original;
    expect(label).toBe('Protected, relabelled');
    expect(rest).toEqual(originalRest);
    const v1 = (await gw.call('GET', v1Url(id))).body;
    expect(v1).toMatchObject({
      workspace_id: ws,
      org_id: 'acme',
      name: 'protected',
      volume_type: 'data',
      max_size_bytes: 2 * GB,
      is_shared: false,
    });
  });

  it('bad fields are 422 naming them, and nothing changes', async () => {
    const id = await create({ projectId: ws, label: 'Stays', sizeGB: 1 });
    const version = (await gw.call('GET', v1Url(id))).body.version;
    const cases: [unknown, string][] = [
      [{ label: '' }, 'body:label'],
      [{ label: null }, 'body:label'],
      [{ mountPath: 'data/x' }, 'body:mountPath'],
      [{ mountPath: '/data/../x' }, 'body:mountPath'],
      [{ description: 42 }, 'body:description'],
      [['label'], 'body:'],
      ['not json', 'body:'],
    ];
    for (const [body, field] of cases) {
      const res = await api('PUT', `/${id}`, body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(fieldsOf(res.body)[0], JSON.stringify(body)).toBe(field);
    }
    const v1 = (await gw.call('GET', v1Url(id))).body;
    expect(v1).toMatchObject({ label: 'Stays', version, mount_path: '/data/stays' });
  });
});

describe('project volumes: status, delete, sync, share', () => {
  async function mount(id: string, appId = 'bot', wsId = ws) {
    const res = await gw.call('POST', `${v1Url(id, wsId)}/mounts`, { app_id: appId, path_pattern: '/**', access_level: 'read' });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.mount.mount_id as string;
  }

  it('status: bound while mounted, available otherwise; our degraded and error as such', async () => {
    const sql = (text: string, ...args: unknown[]) => gw.app.database.prisma.$executeRawUnsafe(text, ...args);
    const id = await create({ projectId: ws, label: 'Status', sizeGB: 1 });
    expect((await api('GET', `/${id}`)).body.status).toBe('available');
    const m = await mount(id);
    expect((await api('GET', `/${id}`)).body.status).toBe('bound');
    const listed = await api('GET', `?projectId=${ws}&search=status&limit=100`);
    expect(listed.body.volumes.map((v: { status: string }) => v.status)).toEqual(['bound']);
    // A failed reindex makes it degraded (the facts and the status the domain derives from them, set together),
    // mounted or not: a problem wins over bound.
    await sql(`UPDATE volumes SET reindex_status = 'failed', status = 'degraded' WHERE id = $1`, id);
    expect((await api('GET', `/${id}`)).body.status).toBe('degraded');
    await sql(`UPDATE volumes SET reindex_status = NULL, status = 'active' WHERE id = $1`, id);
    expect((await gw.call('DELETE', `${v1Url(id)}/mounts/${m}`)).status).toBe(200);
    expect((await api('GET', `/${id}`)).body.status).toBe('available');
    // A project whose bucket failed: its volumes are in error.
    const broken = await workspace('acme', 'broken');
    const inBroken = await create({ projectId: broken, label: 'Broken', sizeGB: 1 });
    await sql(`UPDATE workspaces SET bucket_status = 'failed' WHERE id = $1`, broken);
    await sql(`UPDATE volumes SET status = 'error' WHERE workspace_id = $1`, broken);
    expect((await api('GET', `/${inBroken}`)).body.status).toBe('error');
    expect((await gw.call('GET', v1Url(inBroken, broken))).body.status).toBe('error');
  });

  it('DELETE is 204 and permanent; an attached volume is 409 until its mounts are gone', async () => {
    const id = await create({ projectId: ws, label: 'Doomed', sizeGB: 1 });
    const m = await mount(id);
    const refused = await api('DELETE', `/${id}`);
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'CONFLICT', details: { volumeId: id, mountCount: 1, reason: 'attached' } });
    expect((await api('GET', `/${id}`)).status).toBe(200);
    expect((await gw.call('DELETE', `${v1Url(id)}/mounts/${m}`)).status).toBe(200);
    const res = await api('DELETE', `/${id}`);
    expect(res.status).toBe(204);
    expect(res.body).toBe('');
    expect((await api('GET', `/${id}`)).status).toBe(404);
    expect((await gw.call('GET', v1Url(id))).status).toBe(404);
    // Irreversible: not soft-deleted, nothing to restore, no row left.
    expect((await gw.call('POST', `${v1Url(id)}/restore`, {})).status).toBe(404);
    const rows = await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM volumes WHERE id = $1', id);
    expect(rows[0]?.n).toBe(0);
    expect((await api('DELETE', `/${id}`)).status).toBe(404);
  });

  it('sync answers 200 {message, volumeId, syncJobId}: the backup /v1 shows and completes', async () => {
    await waitFor(async () => (await gw.call('GET', `/v1/orgs/acme/workspaces/${ws}`)).body.bucket_status === 'active');
    const id = await create({ projectId: ws, label: 'Synced', sizeGB: 1 });
    expect((await gw.call('PUT', `${v1Url(id)}/entries/notes/a.md`, { content_text: 'hello' })).status).toBe(201);
    const res = await api('POST', `/${id}/sync`);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['message', 'volumeId', 'syncJobId']);
    expect(res.body).toMatchObject({ message: 'Volume sync to S3 initiated', volumeId: id });
    const backupUrl = `${v1Url(id)}/backups/${res.body.syncJobId}`;
    const backup = await gw.call('GET', backupUrl);
    expect(backup.status).toBe(200);
    expect(backup.body).toMatchObject({ backup_id: res.body.syncJobId, sync_job_id: res.body.syncJobId, volume_id: id });
    const done = await waitFor(async () => {
      const b = (await gw.call('GET', backupUrl)).body;
      return b.status === 'completed' && b;
    }, 30_000);
    expect(done.entry_count).toBe(1);
  });

  it('make-shared answers 200 {message, volumeId, isShared: true}; GET, the shared list and /v1 agree', async () => {
    const id = await create({ projectId: ws, label: 'To Share', sizeGB: 1 });
    const res = await api('POST', `/${id}/make-shared`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ message: 'Volume is now shared', volumeId: id, isShared: true });
    expect((await api('GET', `/${id}`)).body).toMatchObject({ isShared: true, shared: true, sharedWith: [] });
    expect((await gw.call('GET', v1Url(id))).body.is_shared).toBe(true);
    const shared = await api('GET', '/shared?search=to%20share');
    expect(shared.body.volumes.map((v: { id: string }) => v.id)).toEqual([id]);
    // Again: still shared, same answer.
    expect((await api('POST', `/${id}/make-shared`)).body).toEqual({ message: 'Volume is now shared', volumeId: id, isShared: true });
  });
});

describe('project volumes: credentials, scopes and isolation', () => {
  let mine: string;
  let theirs: string;

  beforeAll(async () => {
    mine = await create({ projectId: ws, label: 'Mine', sizeGB: 1 });
    const res = await api('POST', '', { projectId: otherWs, label: 'Theirs', sizeGB: 1 }, otherKey);
    expect(res.status).toBe(201);
    theirs = res.body.volumeId;
  });

  it('the key in X-API-Key or as a Bearer token; none or a wrong one is 401', async () => {
    expect((await api('GET', `/${mine}`)).status).toBe(200);
    const bearer = await call(gw.url, 'GET', `${BASE}/${mine}`, undefined, { key: rw.key });
    expect(bearer.status).toBe(200);
    expect(bearer.body.id).toBe(mine);
    const none = await api('GET', `/${mine}`, undefined, null);
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(Object.keys(none.body)).toEqual(['code', 'message', 'details']);
    expect((await api('GET', '', undefined, 'vga_not-a-real-key')).status).toBe(401);
  });

  it('volumes:read reads, but every write is 403 naming volumes:write and changes nothing', async () => {
    expect((await api('GET', `/${mine}`, undefined, ro)).status).toBe(200);
    expect((await api('GET', '', undefined, ro)).status).toBe(200);
    expect((await api('GET', '/shared', undefined, ro)).status).toBe(200);
    const before = await volumeRows('acme');
    const writes: [string, string, unknown][] = [
      ['POST', '', { projectId: ws, label: 'No', sizeGB: 1 }],
      ['PUT', `/${mine}`, { label: 'No' }],
      ['DELETE', `/${mine}`, undefined],
      ['POST', `/${mine}/sync`, undefined],
      ['POST', `/${mine}/make-shared`, undefined],
      // An id that does not exist is 403 too: the scope is checked first.
      ['PUT', `/${MISSING}`, { label: 'No' }],
    ];
    for (const [method, path, body] of writes) {
      const res = await api(method, path, body, ro);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body).toMatchObject({ code: 'FORBIDDEN', details: { requiredPermission: 'volumes:write' } });
    }
    expect(await volumeRows('acme')).toBe(before);
    expect((await api('GET', `/${mine}`)).body).toMatchObject({ label: 'Mine', isShared: false });
  });

  it('without volumes:read, reads are 403 naming it', async () => {
    for (const path of ['', '/shared', `/${mine}`, `/${MISSING}`]) {
      const res = await api('GET', path, undefined, noRead);
      expect(res.status, path).toBe(403);
      expect(res.body.details).toEqual({ requiredPermission: 'volumes:read' });
    }
  });

  it("another organisation's volume is 404 on every route, and never listed", async () => {
    for (const [method, path, body] of [
      ['GET', `/${theirs}`, undefined],
      ['PUT', `/${theirs}`, { label: 'Hijacked' }],
      ['DELETE', `/${theirs}`, undefined],
      ['POST', `/${theirs}/sync`, undefined],
      ['POST', `/${theirs}/make-shared`, undefined],
    ] as const) {
      const res = await api(method, path, body);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
    }
    const listed = await api('GET', '?limit=100&search=theirs');
    expect(listed.body).toMatchObject({ count: 0, volumes: [] });
    const v1 = await gw.call('GET', v1Url(theirs, otherWs, 'other'));
    expect(v1.body).toMatchObject({ label: 'Theirs', is_shared: false });
    // And the other way round.
    expect((await api('GET', `/${mine}`, undefined, otherKey)).status).toBe(404);
  });

  it('an app key sees only the volumes mounted for its app (and shared ones)', async () => {
    const app = (await orgKey('acme', 'app-reader', ['volumes:read'], 'reader-app')).key;
    const mounted = await create({ projectId: ws, label: 'For The App', sizeGB: 1 });
    const res = await gw.call('POST', `${v1Url(mounted)}/mounts`, { app_id: 'reader-app', path_pattern: '/**', access_level: 'read' });
    expect(res.status).toBe(201);
    expect((await api('GET', `/${mounted}`, undefined, app)).status).toBe(200);
    expect((await api('GET', `/${mine}`, undefined, app)).status).toBe(404);
    const listed = await api('GET', '?limit=100', undefined, app);
    expect(listed.status).toBe(200);
    const visible = listed.body.volumes.map((v: { id: string; isShared: boolean }) => v);
    expect(visible.map((v: { id: string }) => v.id)).toContain(mounted);
    expect(visible.map((v: { id: string }) => v.id)).not.toContain(mine);
    expect(visible.every((v: { id: string; isShared: boolean }) => v.id === mounted || v.isShared)).toBe(true);
    expect(listed.body.count).toBe(visible.length);
    // Writes: an app key never creates, and changes a volume only through an admin mount.
    const writer = (await orgKey('acme', 'app-writer', ['volumes:read', 'volumes:write'], 'reader-app')).key;
    const before = await volumeRows('acme');
    const made = await api('POST', '', { projectId: ws, label: 'By App', sizeGB: 1 }, writer);
    expect(made.status).toBe(403);
    expect(made.body.code).toBe('FORBIDDEN');
    expect(await volumeRows('acme')).toBe(before);
    const put = await api('PUT', `/${mounted}`, { label: 'Renamed By App' }, writer);
    expect(put.status).toBe(403);
    expect((await api('GET', `/${mounted}`)).body.label).toBe('For The App');
  });

  it('the platform key names the organisation in X-Org-Id (required)', async () => {
    const missing = await api('GET', '', undefined, ADMIN_KEY);
    expect(missing.status).toBe(422);
    expect(missing.body.details.fields).toEqual([expect.objectContaining({ location: 'header', field: 'X-Org-Id', type: 'missing' })]);
    for (const [method, path] of [
      ['GET', `/${mine}`],
      ['POST', `/${mine}/make-shared`],
    ] as const) {
      expect((await api(method, path, undefined, ADMIN_KEY)).status, path).toBe(422);
    }
    const acme = await api('GET', `/${mine}`, undefined, ADMIN_KEY, { 'x-org-id': 'acme' });
    expect(acme.status).toBe(200);
    expect(acme.body.id).toBe(mine);
    expect((await api('GET', `/${mine}`, undefined, ADMIN_KEY, { 'x-org-id': 'other' })).status).toBe(404);
    const theirList = await api('GET', '?limit=100', undefined, ADMIN_KEY, { 'x-org-id': 'other' });
    expect(theirList.body.volumes.map((v: { id: string }) => v.id)).toContain(theirs);
    expect(theirList.body.volumes.every((v: { organizationId: string }) => v.organizationId === 'other')).toBe(true);
    const bad = await api('GET', '', undefined, ADMIN_KEY, { 'x-org-id': 'not an org!' });
    expect(bad.status).toBe(422);
    expect(bad.body.details.fields[0]).toMatchObject({ location: 'header', field: 'X-Org-Id' });
    // A create with the platform key records it as the owner.
    const made = await api('POST', '', { projectId: ws, label: 'By Admin', sizeGB: 1 }, ADMIN_KEY, { 'x-org-id': 'acme' });
    expect(made.status).toBe(201);
    const got = await api('GET', `/${made.body.volumeId}`);
    expect(got.body).toMatchObject({ ownerId: 'admin', owner: { id: 'admin', name: 'platform admin', email: null } });
  });
});

describe('project volumes: OpenAPI', () => {
  it('/v1/openapi.json documents every route, tagged project-volumes', async () => {
    const res = await gw.call('GET', '/v1/openapi.json');
    expect(res.status).toBe(200);
    const ops = Object.entries(res.body.paths as Record<string, Record<string, { operationId: string; tags: string[] }>>)
      .filter(([path]) => path.startsWith(BASE))
      .flatMap(([path, item]) =>
        Object.entries(item).map(([method, op]) => `${method.toUpperCase()} ${path} ${op.operationId} ${op.tags}`),
      );
    expect(ops.sort()).toEqual(
      [
        `GET ${BASE} projectListVolumes project-volumes`,
        `POST ${BASE} projectCreateVolume project-volumes`,
        `GET ${BASE}/shared projectListSharedVolumes project-volumes`,
        `GET ${BASE}/{id} projectGetVolume project-volumes`,
        `PUT ${BASE}/{id} projectUpdateVolume project-volumes`,
        `DELETE ${BASE}/{id} projectDeleteVolume project-volumes`,
        `POST ${BASE}/{id}/sync projectSyncVolume project-volumes`,
        `POST ${BASE}/{id}/make-shared projectMakeVolumeShared project-volumes`,
      ].sort(),
    );
  });
});
