import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from '../src/domain/access/authenticate.js';
import type { Principal } from '../src/domain/access/principal.js';
import { NotFoundError } from '../src/domain/shared/errors.js';
import { parseInput } from '../src/domain/shared/validation.js';
import { listOrgVolumes, OrgVolumeListQuery } from '../src/domain/volumes/listing.js';
import { ADMIN_KEY, createKey, startGateway, type TestGateway } from './helpers/app.js';

let gw: TestGateway;
let ws: string;
let url: string;
const ORG = 'listing';
const codeOf = (body: any) => body.errors?.[0]?.extensions?.code;
const names = (body: any) => body.volumes.map((v: { name: string }) => v.name);
const list = (q: string) => gw.call('GET', `${url}?${q}`);

// Created in this order, so creation order is alpha … epsilon.
const VOLUMES = [
  { name: 'alpha', description: 'First dataset', tags: ['x', 'y'] },
  { name: 'beta', description: 'under_score 50%', tags: [] },
  { name: 'gamma', description: null, tags: ['y'] },
  { name: 'delta', description: 'Another DATASET', tags: ['z'] },
  { name: 'epsilon', description: null, tags: [] },
];

beforeAll(async () => {
  gw = await startGateway();
  const res = await gw.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'vols' });
  ws = res.body.workspace_id;
  url = `/v1/orgs/${ORG}/workspaces/${ws}/volumes`;
  for (const v of VOLUMES) expect((await gw.call('POST', url, v)).status).toBe(201);
  for (const [name, body] of [
    ['Research', { description: 'ML work', tags: ['ml', 'team'] }],
    ['Archive', { description: 'old 100% done', tags: ['team'], is_active: false }],
    ['Ops', { tags: ['ops'] }],
  ] as const) {
    expect((await gw.call('POST', `/v1/orgs/${ORG}/workspaces`, { name, ...body })).status).toBe(201);
  }
});
afterAll(async () => {
  await gw?.stop();
});

describe('volume lists over REST', () => {
  it('search matches name or description, case-insensitively, with % and _ taken literally', async () => {
    expect(names((await list('search=ALP')).body)).toEqual(['alpha']);
    expect(names((await list('search=dataset')).body)).toEqual(['alpha', 'delta']);
    expect(names((await list('search=50%25')).body)).toEqual(['beta']);
    expect(names((await list('search=_')).body)).toEqual(['beta']);
    expect(names((await list('search=%25')).body)).toEqual(['beta']);
    expect(names((await list('search=%5C')).body)).toEqual([]);
    expect((await list('search=')).body.total).toBe(5);
    expect((await list('search=nothing-like-it')).body).toEqual({ total: 0, has_more: false, next_cursor: null, volumes: [] });
  });

  it('tags must all be present; status filters', async () => {
    expect(names((await list('tags=y')).body)).toEqual(['alpha', 'gamma']);
    expect(names((await list('tags=x,y')).body)).toEqual(['alpha']);
    expect(names((await list('tags=x&tags=y')).body)).toEqual(['alpha']);
    expect(names((await list('tags=y,nope')).body)).toEqual([]);
    expect((await list('status=active')).body.total).toBe(5);
    expect((await list('status=error')).body.total).toBe(0);
    expect(names((await list('search=a&tags=y&sort=name:desc')).body)).toEqual(['gamma', 'alpha']);
  });

  it('sorts by name, created_at and updated_at in either direction', async () => {
    expect(names((await list('sort=name')).body)).toEqual(['alpha', 'beta', 'delta', 'epsilon', 'gamma']);
    expect(names((await list('sort=name:asc')).body)).toEqual(['alpha', 'beta', 'delta', 'epsilon', 'gamma']);
    expect(names((await list('sort=name:desc')).body)).toEqual(['gamma', 'epsilon', 'delta', 'beta', 'alpha']);
    expect(names((await list('sort=created_at:desc')).body)).toEqual(['epsilon', 'delta', 'gamma', 'beta', 'alpha']);
    expect(names((await list('sort=created_at:asc')).body)).toEqual(['alpha', 'beta', 'gamma', 'delta', 'epsilon']);
    const gamma = (await list('search=gamma')).body.volumes[0];
    expect((await gw.call('PATCH', `${url}/${gamma.volume_id}`, { description: 'touched' })).status).toBe(200);
    expect(names((await list('sort=updated_at:desc')).body)[0]).toBe('gamma');
    expect(names((await list('sort=updated_at:asc')).body).at(-1)).toBe('gamma');
  });

  it('pages a sorted list with cursors that belong to that sort', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: any } = await list(`sort=name:desc&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.total).toBe(5);
      seen.push(...names(page.body));
      cursor = page.body.next_cursor;
      expect(page.body.has_more).toBe(cursor !== null);
    } while (cursor);
    expect(seen).toEqual(['gamma', 'epsilon', 'delta', 'beta', 'alpha']);

    const sorted = (await list('sort=name:desc&limit=1')).body.next_cursor;
    const plain = (await list('limit=1')).body.next_cursor;
    for (const q of [
      `sort=name:asc&cursor=${sorted}`,
      `cursor=${sorted}`,
      `sort=created_at:desc&cursor=${plain}`,
      'sort=name&cursor=abc',
    ]) {
      const res = await list(q);
      expect(res.status, q).toBe(422);
      expect(res.body.detail[0]).toMatchObject({ loc: ['query', 'cursor'], type: 'cursor_invalid' });
    }
  });

  it('pages with offset, whose pages still answer a cursor to go on from', async () => {
    const page = await list('offset=3&limit=1');
    expect(page.body).toMatchObject({ total: 5, has_more: true });
    expect(names(page.body)).toEqual(['delta']);
    expect(names((await list(`limit=5&cursor=${page.body.next_cursor}`)).body)).toEqual(['epsilon']);
    expect(names((await list('offset=1&limit=2&sort=name:desc')).body)).toEqual(['epsilon', 'delta']);
    expect((await list('offset=5')).body).toEqual({ total: 5, has_more: false, next_cursor: null, volumes: [] });
    expect((await list('offset=0')).body.volumes).toHaveLength(5);
  });

  it('422 for an unknown sort or status, a bad offset, and offset with a cursor', async () => {
    const cursor = (await list('limit=1')).body.next_cursor;
    for (const [q, loc, type] of [
      ['sort=size:asc', ['query', 'sort'], 'enum'],
      ['sort=name:up', ['query', 'sort'], 'enum'],
      ['status=sleeping', ['query', 'status'], 'enum'],
      ['offset=-1', ['query', 'offset'], 'greater_than_equal'],
      ['offset=abc', ['query', 'offset'], 'int_parsing'],
      ['offset=100001', ['query', 'offset'], 'less_than_equal'],
      [`offset=2&cursor=${cursor}`, ['query', 'offset'], 'value_error'],
      [`search=${'s'.repeat(201)}`, ['query', 'search'], 'string_too_long'],
      ['search=%00', ['query', 'search'], 'string_nul'],
    ] as const) {
      const res = await list(q);
      expect(res.status, q).toBe(422);
      expect(res.body.detail[0], q).toMatchObject({ loc, type });
    }
  });
});

describe('workspace lists over REST', () => {
  const wsList = (q: string) => gw.call('GET', `/v1/orgs/${ORG}/workspaces?${q}`);
  const wsNames = (body: any) => body.workspaces.map((w: { name: string }) => w.name);

  it('filters, sorts and pages like volume lists; status is is_active', async () => {
    expect(wsNames((await wsList('search=ml')).body)).toEqual(['Research']);
    expect(wsNames((await wsList('search=100%25')).body)).toEqual(['Archive']);
    expect(wsNames((await wsList('tags=team&sort=name:asc')).body)).toEqual(['Archive', 'Research']);
    expect(wsNames((await wsList('status=inactive')).body)).toEqual(['Archive']);
    expect((await wsList('status=active')).body.total).toBe(3);
    expect(wsNames((await wsList('sort=created_at:desc&limit=2')).body)).toEqual(['Ops', 'Archive']);
    const page = await wsList('sort=created_at:desc&offset=1&limit=1');
    expect(page.body).toMatchObject({ total: 4, has_more: true });
    expect(wsNames(page.body)).toEqual(['Archive']);
    expect(wsNames((await wsList(`sort=created_at:desc&cursor=${page.body.next_cursor}`)).body)).toEqual(['Research', 'vols']);
    for (const [q, loc] of [
      ['sort=region', ['query', 'sort']],
      ['status=deleted', ['query', 'status']],
      [`offset=1&cursor=${page.body.next_cursor}`, ['query', 'offset']],
    ] as const) {
      const res = await wsList(q);
      expect(res.status, q).toBe(422);
      expect(res.body.detail[0].loc, q).toEqual(loc);
    }
  });
});

describe('listing over GraphQL', () => {
  it('volumes, Workspace.volumes and workspaces take the same filters, sort and offset', async () => {
    const top = await gw.gql(
      `query($ws: ID!) { volumes(workspaceId: $ws, search: "DATASET", sort: "name:desc") { totalCount edges { node { name } } } }`,
      { ws },
    );
    expect(top.body.errors).toBeUndefined();
    expect(top.body.data.volumes).toEqual({ totalCount: 2, edges: [{ node: { name: 'delta' } }, { node: { name: 'alpha' } }] });

    const paged = await gw.gql(
      `query($ws: ID!) { volumes(workspaceId: $ws, sort: "name:asc", offset: 1, first: 2) { edges { node { name } } } }`,
      {
        ws,
      },
    );
    expect(paged.body.data.volumes.edges.map((e: any) => e.node.name)).toEqual(['beta', 'delta']);

    // Cursor paging over a sort: after the second page's end comes the rest in the same order.
    const first = await gw.gql(
      `query($ws: ID!) { volumes(workspaceId: $ws, sort: "name:desc", first: 2) { pageInfo { endCursor hasNextPage } } }`,
      {
        ws,
      },
    );
    const after = await gw.gql(
      `query($ws: ID!, $after: String) { volumes(workspaceId: $ws, sort: "name:desc", first: 10, after: $after) { edges { node { name } } } }`,
      { ws, after: first.body.data.volumes.pageInfo.endCursor },
    );
    expect(after.body.data.volumes.edges.map((e: any) => e.node.name)).toEqual(['delta', 'beta', 'alpha']);

    const nested = await gw.gql(
      `query($ws: ID!) { workspace(id: $ws) { volumes(tags: ["y"], sort: "name:desc", status: active) { totalCount edges { node { name tags } } } } }`,
      { ws },
    );
    expect(nested.body.errors).toBeUndefined();
    expect(nested.body.data.workspace.volumes).toEqual({
      totalCount: 2,
      edges: [{ node: { name: 'gamma', tags: ['y'] } }, { node: { name: 'alpha', tags: ['x', 'y'] } }],
    });

    const wss = await gw.gql(
      `{ workspaces(orgId: "${ORG}", tags: ["team"], status: active, sort: "name:asc") { totalCount edges { node { name } } } }`,
    );
    expect(wss.body.data.workspaces).toEqual({ totalCount: 1, edges: [{ node: { name: 'Research' } }] });
    const wsOffset = await gw.gql(`{ workspaces(orgId: "${ORG}", sort: "created_at:desc", offset: 3) { edges { node { name } } } }`);
    expect(wsOffset.body.data.workspaces.edges.map((e: any) => e.node.name)).toEqual(['vols']);
  });

  it('refuses bad arguments with VALIDATION_FAILED naming them', async () => {
    for (const [query, field] of [
      [`{ workspaces(orgId: "${ORG}", sort: "size") { totalCount } }`, 'sort'],
      [`{ workspaces(orgId: "${ORG}", offset: -2) { totalCount } }`, 'offset'],
      [`{ workspaces(orgId: "${ORG}", search: "${'q'.repeat(201)}") { totalCount } }`, 'search'],
      [`query($ws: ID!) { volumes(workspaceId: $ws, offset: 1, after: "x") { totalCount } }`, 'offset'],
      [`query($ws: ID!) { workspace(id: $ws) { volumes(sort: "name:sideways") { totalCount } } }`, 'sort'],
    ] as const) {
      const res = await gw.gql(query, { ws });
      expect(codeOf(res.body), query).toBe('VALIDATION_FAILED');
      expect(res.body.errors[0].extensions.fields?.[0]?.path ?? [field], query).toEqual([field]);
    }
    const missing = await gw.gql(`{ volumes(workspaceId: "01900000-0000-7000-8000-000000000000") { totalCount } }`);
    expect(codeOf(missing.body)).toBe('NOT_FOUND');
  });
});

// Labels, types and environments, in an organisation of their own (the lists above count theirs).
const TYPED_ORG = 'listing-typed';
const TYPED = [
  { name: 'train-set', label: 'Training 100% clean', volume_type: 'data' },
  { name: 'weights', label: 'Model_weights', volume_type: 'model', environment_id: 'env-1' },
  { name: 'scratch', label: 'Scratch space', volume_type: 'workspace', description: 'has 100% of nothing', environment_id: 'env-1' },
  { name: 'ckpt', label: 'Checkpoints', volume_type: 'model', description: 'model_v2 snapshots' },
];

describe('labels and types in volume lists', () => {
  let typedWs: string;
  let otherWs: string;
  const ids = new Map<string, string>();
  const typedUrl = () => `/v1/orgs/${TYPED_ORG}/workspaces/${typedWs}/volumes`;
  const typed = (q: string) => gw.call('GET', `${typedUrl()}?${q}`);
  const admin: Principal = { kind: 'platform', subject: 'admin' };
  const orgList = (raw: Record<string, unknown>, p: Principal = admin) =>
    listOrgVolumes(gw.app.runtime, p, TYPED_ORG, parseInput(OrgVolumeListQuery, raw, ['query']));
  const itemNames = (page: { items: { name: string }[] }) => page.items.map((v) => v.name);

  beforeAll(async () => {
    typedWs = (await gw.call('POST', `/v1/orgs/${TYPED_ORG}/workspaces`, { name: 'typed' })).body.workspace_id;
    for (const v of TYPED) {
      const res = await gw.call('POST', typedUrl(), v);
      expect(res.status).toBe(201);
      ids.set(v.name, res.body.volume.volume_id);
    }
    otherWs = (await gw.call('POST', `/v1/orgs/${TYPED_ORG}/workspaces`, { name: 'other' })).body.workspace_id;
    const shared = await gw.call('POST', `/v1/orgs/${TYPED_ORG}/workspaces/${otherWs}/volumes`, { name: 'common', label: 'Common data' });
    ids.set('common', shared.body.volume.volume_id);
    expect((await gw.call('POST', `/v1/orgs/${TYPED_ORG}/workspaces/${otherWs}/volumes/${ids.get('common')}/make-shared`)).status).toBe(
      200,
    );
    expect((await gw.call('POST', `/v1/orgs/${TYPED_ORG}/workspaces/${otherWs}/volumes`, { name: 'private' })).status).toBe(201);
  });

  it('search looks in the label too, with % and _ taken literally', async () => {
    expect(names((await typed('search=training')).body)).toEqual(['train-set']);
    expect(names((await typed('search=MODEL_W')).body)).toEqual(['weights']);
    expect(names((await typed('search=model')).body)).toEqual(['weights', 'ckpt']);
    expect(names((await typed('search=100%25')).body)).toEqual(['train-set', 'scratch']);
    expect(names((await typed('search=%25')).body)).toEqual(['train-set', 'scratch']);
    expect(names((await typed('search=_')).body)).toEqual(['weights', 'ckpt']);
    expect(names((await typed('search=l_w')).body)).toEqual(['weights']);
  });

  it('volume_type filters, also with search; an unknown type is 422', async () => {
    expect(names((await typed('volume_type=model')).body)).toEqual(['weights', 'ckpt']);
    expect((await typed('volume_type=model')).body.total).toBe(2);
    expect(names((await typed('volume_type=data')).body)).toEqual(['train-set']);
    expect(names((await typed('volume_type=workspace&search=100')).body)).toEqual(['scratch']);
    expect(names((await typed('volume_type=model&search=snap')).body)).toEqual(['ckpt']);
    for (const q of ['volume_type=shared', 'volume_type=', 'volume_type=Model']) {
      const res = await typed(q);
      expect(res.status, q).toBe(422);
      expect(res.body.detail[0], q).toMatchObject({ loc: ['query', 'volume_type'], type: 'enum' });
    }
    // The shared list takes it too.
    const shared = await gw.call('GET', `/v1/orgs/${TYPED_ORG}/volumes/shared?volume_type=data`);
    expect(names(shared.body)).toEqual(['common']);
    expect((await gw.call('GET', `/v1/orgs/${TYPED_ORG}/volumes/shared?volume_type=model`)).body.total).toBe(0);
  });

  it('sorts by label, with cursors of that sort, and pages with offset and a total', async () => {
    expect(names((await typed('sort=label')).body)).toEqual(['ckpt', 'weights', 'scratch', 'train-set']);
    expect(names((await typed('sort=label:desc')).body)).toEqual(['train-set', 'scratch', 'weights', 'ckpt']);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: any } = await typed(`sort=label:desc&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...names(page.body));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(['train-set', 'scratch', 'weights', 'ckpt']);
    const nameCursor = (await typed('sort=name&limit=1')).body.next_cursor;
    expect((await typed(`sort=label&cursor=${nameCursor}`)).body.detail[0]).toMatchObject({ loc: ['query', 'cursor'] });
    const page = await typed('sort=created_at:desc&offset=1&limit=2');
    expect(page.body).toMatchObject({ total: 4, has_more: true });
    expect(names(page.body)).toEqual(['scratch', 'weights']);
  });

  it('listOrgVolumes (domain): every workspace of the org, offset/limit with a total, filters and sort', async () => {
    const all = await orgList({ limit: 20, offset: 0, sort: 'created_at:desc' });
    expect(all.total).toBe(6);
    expect(itemNames(all)).toEqual(['private', 'common', 'ckpt', 'scratch', 'weights', 'train-set']);
    const page = await orgList({ limit: 2, offset: 2, sort: 'created_at:desc' });
    expect({ total: page.total, hasMore: page.hasMore, names: itemNames(page) }).toEqual({
      total: 6,
      hasMore: true,
      names: ['ckpt', 'scratch'],
    });
    expect(itemNames(await orgList({ limit: 2, offset: 4, sort: 'created_at:asc' }))).toEqual(['common', 'private']);
    const last = await orgList({ limit: 5, offset: 5 });
    expect({ total: last.total, hasMore: last.hasMore, n: last.items.length }).toEqual({ total: 6, hasMore: false, n: 1 });
    expect(itemNames(await orgList({ workspace_id: otherWs, sort: 'name' }))).toEqual(['common', 'private']);
    expect(itemNames(await orgList({ environment_id: 'env-1' }))).toEqual(['weights', 'scratch']);
    expect(itemNames(await orgList({ is_shared: true }))).toEqual(['common']);
    expect(itemNames(await orgList({ search: 'in', sort: 'label:desc' }))).toEqual(['train-set', 'scratch', 'ckpt']);
    expect((await orgList({ volume_type: 'model', search: '_' })).total).toBe(2);
    expect((await orgList({ workspace_id: '01900000-0000-7000-8000-000000000000' })).total).toBe(0);
    // Bad queries are the list's 422 items.
    expect(() => parseInput(OrgVolumeListQuery, { limit: 1, offset: -1 }, ['query'])).toThrow(/offset/);
    expect(() => parseInput(OrgVolumeListQuery, { volume_type: 'shared' }, ['query'])).toThrow(/volume_type/);
  });

  it('listOrgVolumes sees what the key sees: an app key its mounted and shared volumes, another org nothing', async () => {
    const rt = gw.app.runtime;
    const weights = ids.get('weights') as string;
    expect(
      (await gw.call('POST', `/v1/orgs/${TYPED_ORG}/workspaces/${typedWs}/volumes/${weights}/mounts`, { app_id: 'trainer' })).status,
    ).toBe(201);
    const app = await authenticate(rt, await createKey(gw, TYPED_ORG, ['volumes:read'], 'trainer'), ADMIN_KEY);
    expect(itemNames(await orgList({ sort: 'name' }, app))).toEqual(['common', 'weights']);
    const org = await authenticate(rt, await createKey(gw, TYPED_ORG, ['volumes:read']), ADMIN_KEY);
    expect((await orgList({}, org)).total).toBe(6);
    const stranger = await authenticate(rt, await createKey(gw, 'listing', ['volumes:read']), ADMIN_KEY);
    await expect(orgList({}, stranger)).rejects.toBeInstanceOf(NotFoundError);
    const noScope = await authenticate(rt, await createKey(gw, TYPED_ORG, ['workspaces:read']), ADMIN_KEY);
    await expect(orgList({}, noScope)).rejects.toMatchObject({ code: 'FORBIDDEN', details: { required_permission: 'volumes:read' } });
  });

  it('GraphQL volumes, sharedVolumes and Workspace.volumes take volumeType, search the label and sort by it', async () => {
    const res = await gw.gql(
      `query($ws: ID!) {
        byType: volumes(workspaceId: $ws, volumeType: model, sort: "label:desc") { totalCount edges { node { name label volumeType } } }
        bySearch: volumes(workspaceId: $ws, search: "100%") { totalCount edges { node { name } } }
        paged: volumes(workspaceId: $ws, sort: "created_at:desc", offset: 1, first: 2) { totalCount edges { node { name } } }
        shared: sharedVolumes(orgId: "${TYPED_ORG}", volumeType: data) { edges { node { name mountPath } } }
        workspace(id: $ws) { volumes(volumeType: workspace) { edges { node { name } } } }
      }`,
      { ws: typedWs },
    );
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.byType).toEqual({
      totalCount: 2,
      edges: [
        { node: { name: 'weights', label: 'Model_weights', volumeType: 'model' } },
        { node: { name: 'ckpt', label: 'Checkpoints', volumeType: 'model' } },
      ],
    });
    expect(res.body.data.bySearch).toEqual({ totalCount: 2, edges: [{ node: { name: 'train-set' } }, { node: { name: 'scratch' } }] });
    expect(res.body.data.paged).toEqual({ totalCount: 4, edges: [{ node: { name: 'scratch' } }, { node: { name: 'weights' } }] });
    expect(res.body.data.shared.edges).toEqual([{ node: { name: 'common', mountPath: '/data/common-data' } }]);
    expect(res.body.data.workspace.volumes.edges).toEqual([{ node: { name: 'scratch' } }]);

    const badSort = await gw.gql('query($ws: ID!) { volumes(workspaceId: $ws, sort: "label:up") { totalCount } }', { ws: typedWs });
    expect(codeOf(badSort.body)).toBe('VALIDATION_FAILED');
    expect(badSort.body.errors[0].extensions.fields[0].path).toEqual(['sort']);
    const badType = await gw.gql('query($ws: ID!) { volumes(workspaceId: $ws, volumeType: shared) { totalCount } }', { ws: typedWs });
    expect(badType.body.errors[0].message).toMatch(/VolumeType/);
    expect(badType.body.data ?? null).toBeNull();
  });
});
