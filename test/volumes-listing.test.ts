import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './helpers/app.js';

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
