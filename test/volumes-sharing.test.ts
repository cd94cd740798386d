import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';

let gw: TestGateway;
let wsA: string;
let wsB: string;
let vol: string;
let base: string;
let reader: string;
const ORG = 'sharing';
const codeOf = (body: any) => body.errors?.[0]?.extensions?.code;
const vols = (ws: string) => `/v1/orgs/${ORG}/workspaces/${ws}/volumes`;

async function workspace(name: string): Promise<string> {
  const res = await gw.call('POST', `/v1/orgs/${ORG}/workspaces`, { name });
  expect(res.status).toBe(201);
  return res.body.workspace_id;
}
async function volume(ws: string, body: Record<string, unknown>): Promise<string> {
  const res = await gw.call('POST', vols(ws), body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.volume.volume_id;
}

beforeAll(async () => {
  gw = await startGateway();
  wsA = await workspace('a');
  wsB = await workspace('b');
  vol = await volume(wsA, { name: 'common-data', description: 'Datasets for everyone', tags: ['data'] });
  base = `${vols(wsA)}/${vol}`;
  for (const [path, body] of [
    ['notes/a.md', { content_text: 'alpha' }],
    ['secret/b.json', { content: { b: 1 } }],
  ] as const) {
    expect((await gw.call('PUT', `${base}/entries/${path}`, body)).status).toBe(201);
  }
  // An app key with no mount anywhere: before sharing it cannot see the volume at all.
  reader = await createKey(
    gw,
    ORG,
    ['workspaces:read', 'volumes:read', 'volumes:write', 'entries:read', 'entries:write', 'locks:write'],
    'reader',
  );
});
afterAll(async () => {
  await gw?.stop();
});

describe('sharing over REST', () => {
  it('make-shared opens the volume read-only to app keys without a mount; make-private closes it', async () => {
    expect((await gw.call('GET', base, undefined, reader)).status).toBe(404);
    expect((await gw.call('GET', `${base}/entries/secret/b.json`, undefined, reader)).status).toBe(404);

    const before = (await gw.call('GET', base)).body;
    const shared = await gw.call('POST', `${base}/make-shared`);
    expect(shared.status).toBe(200);
    expect(shared.body).toMatchObject({ message: 'Volume is now shared', volume_id: vol, is_shared: true });
    expect(shared.body.volume).toMatchObject({ is_shared: true, version: before.version + 1, modified_by: 'admin' });
    // Idempotent: asking again changes nothing, not even the version.
    const again = await gw.call('POST', `${base}/make-shared`);
    expect(again.body.volume.version).toBe(before.version + 1);

    const seen = await gw.call('GET', base, undefined, reader);
    expect(seen.status).toBe(200);
    expect(seen.body.is_shared).toBe(true);
    // Every path is readable, listed, and the workspace holding it is visible.
    expect((await gw.call('GET', `${base}/entries/secret/b.json`, undefined, reader)).body.content).toEqual({ b: 1 });
    const listed = await gw.call('GET', `${base}/list?path=/`, undefined, reader);
    expect(listed.status).toBe(200);
    expect(JSON.stringify(listed.body)).toContain('secret');
    expect((await gw.call('GET', `/v1/orgs/${ORG}/workspaces/${wsA}`, undefined, reader)).status).toBe(200);
    const inWs = await gw.call('GET', vols(wsA), undefined, reader);
    expect(inWs.body.volumes.map((v: { volume_id: string }) => v.volume_id)).toEqual([vol]);

    // Nothing is writable through sharing: entries, the volume, its mounts, its locks.
    for (const [method, route, body, permission] of [
      ['PUT', `${base}/entries/notes/new.md`, { content_text: 'x' }, 'path:write'],
      ['DELETE', `${base}/entries/notes/a.md`, undefined, 'path:write'],
      ['PATCH', base, { description: 'mine now' }, 'volume:admin'],
      ['POST', `${base}/mounts`, { app_id: 'reader', access_level: 'admin' }, 'volume:admin'],
      ['POST', `${base}/make-private`, undefined, 'volume:admin'],
      ['DELETE', base, undefined, 'volume:admin'],
      ['POST', `${base}/locks`, { partition: 'jobs', app_id: 'reader' }, 'locks:write'],
      ['POST', `${base}/locks`, { partition: '/notes/', app_id: 'reader' }, 'locks:write'],
    ] as [string, string, unknown, string][]) {
      const res = await gw.call(method, route, body, reader);
      expect(res.status, `${method} ${route}`).toBe(403);
      expect(res.body.details.required_permission, `${method} ${route}`).toBe(permission);
    }
    expect((await gw.call('GET', `${base}/entries/notes/a.md`)).body.content_text).toBe('alpha');
    expect((await gw.call('GET', `${base}/entries/notes/new.md`)).status).toBe(404);

    const priv = await gw.call('POST', `${base}/make-private`);
    expect(priv.status).toBe(200);
    expect(priv.body).toMatchObject({ message: 'Volume is now private', volume_id: vol, is_shared: false });
    expect(priv.body.volume.version).toBe(before.version + 2);
    expect((await gw.call('GET', base, undefined, reader)).status).toBe(404);
    expect((await gw.call('GET', `${base}/entries/notes/a.md`, undefined, reader)).status).toBe(404);
    expect((await gw.call('GET', `/v1/orgs/${ORG}/workspaces/${wsA}`, undefined, reader)).status).toBe(404);
  });

  it('an app with a mount keeps its mount rights and reads the rest of a shared volume', async () => {
    const mounted = await volume(wsB, { name: 'mounted' });
    const mb = `${vols(wsB)}/${mounted}`;
    expect((await gw.call('POST', `${mb}/mounts`, { app_id: 'writer', path_pattern: '/notes/**', access_level: 'write' })).status).toBe(
      201,
    );
    expect((await gw.call('PUT', `${mb}/entries/secret/s.md`, { content_text: 'hidden' })).status).toBe(201);
    const writer = await createKey(gw, ORG, ['volumes:read', 'entries:read', 'entries:write', 'locks:write'], 'writer');

    expect((await gw.call('GET', `${mb}/entries/secret/s.md`, undefined, writer)).status).toBe(404);
    expect((await gw.call('POST', `${mb}/make-shared`)).status).toBe(200);
    expect((await gw.call('GET', `${mb}/entries/secret/s.md`, undefined, writer)).body.content_text).toBe('hidden');
    expect((await gw.call('PUT', `${mb}/entries/notes/w.md`, { content_text: 'ok' }, writer)).status).toBe(201);
    expect((await gw.call('PUT', `${mb}/entries/secret/w.md`, { content_text: 'no' }, writer)).status).toBe(403);
    // A mounted app still coordinates through locks on a shared volume.
    expect((await gw.call('POST', `${mb}/locks`, { partition: 'jobs', app_id: 'writer' }, writer)).status).toBe(201);
    expect((await gw.call('POST', `${mb}/make-private`)).status).toBe(200);
  });

  it('scopes still apply: entries:read to read entries, volumes:read to list', async () => {
    expect((await gw.call('POST', `${base}/make-shared`)).status).toBe(200);
    const volumesOnly = await createKey(gw, ORG, ['volumes:read'], 'reader');
    expect((await gw.call('GET', base, undefined, volumesOnly)).status).toBe(200);
    const noEntries = await gw.call('GET', `${base}/entries/notes/a.md`, undefined, volumesOnly);
    expect(noEntries.status).toBe(403);
    expect(noEntries.body.details.required_permission).toBe('entries:read');
    const entriesOnly = await createKey(gw, ORG, ['entries:read']);
    const noList = await gw.call('GET', `/v1/orgs/${ORG}/volumes/shared`, undefined, entriesOnly);
    expect(noList.status).toBe(403);
    expect(noList.body.details.required_permission).toBe('volumes:read');
    const writeOnly = await createKey(gw, ORG, ['volumes:read']);
    expect((await gw.call('POST', `${base}/make-private`, undefined, writeOnly)).body.details.required_permission).toBe('volumes:write');
    expect((await gw.call('POST', `${base}/make-shared`, undefined, null)).status).toBe(401);
  });

  it('lists shared volumes of the whole organisation, at org level and from any workspace', async () => {
    const other = await volume(wsB, { name: 'models', description: 'Shared models 100%', tags: ['ml', 'data'] });
    await volume(wsB, { name: 'private-one', tags: ['data'] });
    expect((await gw.call('POST', `${vols(wsB)}/${other}/make-shared`)).status).toBe(200);
    expect((await gw.call('POST', `${base}/make-shared`)).status).toBe(200);

    for (const route of [`/v1/orgs/${ORG}/volumes/shared`, `${vols(wsA)}/shared`, `${vols(wsB)}/shared`]) {
      for (const key of [undefined, reader]) {
        const res = await gw.call('GET', route, undefined, key);
        expect(res.status, route).toBe(200);
        expect(Object.keys(res.body)).toEqual(['total', 'has_more', 'next_cursor', 'volumes']);
        expect(res.body.total).toBe(2);
        expect(res.body.volumes.map((v: { name: string }) => v.name).sort()).toEqual(['common-data', 'models']);
        expect(res.body.volumes.every((v: { is_shared: boolean }) => v.is_shared)).toBe(true);
      }
    }
    const list = (q: string) => gw.call('GET', `/v1/orgs/${ORG}/volumes/shared?${q}`, undefined, reader);
    expect((await list('search=DATASETS')).body.volumes.map((v: { name: string }) => v.name)).toEqual(['common-data']);
    expect((await list('search=100%25')).body.volumes.map((v: { name: string }) => v.name)).toEqual(['models']);
    expect((await list('search=10_')).body.total).toBe(0);
    expect((await list('tags=ml,data')).body.volumes.map((v: { name: string }) => v.name)).toEqual(['models']);
    expect((await list('sort=name:desc')).body.volumes.map((v: { name: string }) => v.name)).toEqual(['models', 'common-data']);
    const paged = await list('sort=name:asc&limit=1&offset=1');
    expect(paged.body).toMatchObject({ total: 2, has_more: false, next_cursor: null });
    expect(paged.body.volumes.map((v: { name: string }) => v.name)).toEqual(['models']);
    const first = await list('sort=name:asc&limit=1');
    expect(first.body.has_more).toBe(true);
    const next = await list(`sort=name:asc&limit=1&cursor=${first.body.next_cursor}`);
    expect(next.body.volumes.map((v: { name: string }) => v.name)).toEqual(['models']);
    expect((await list('fields=volume_id,name')).body.volumes[0]).toEqual({ volume_id: expect.any(String), name: expect.any(String) });

    for (const [q, loc] of [
      ['sort=size:asc', ['query', 'sort']],
      ['offset=-1', ['query', 'offset']],
      [`offset=1&cursor=${first.body.next_cursor}`, ['query', 'offset']],
      ['fields=name,bogus', ['query', 'fields']],
      ['status=sleeping', ['query', 'status']],
      ['limit=0', ['query', 'limit']],
    ] as const) {
      const res = await list(q);
      expect(res.status, q).toBe(422);
      expect(res.body.detail[0].loc, q).toEqual(loc);
    }
  });

  it('answers 404 for unknown volumes and workspaces and for another organisation', async () => {
    const missing = '01900000-0000-7000-8000-000000000000';
    expect((await gw.call('POST', `${vols(wsA)}/${missing}/make-shared`)).status).toBe(404);
    expect((await gw.call('POST', `${vols(wsA)}/not-an-id/make-private`)).status).toBe(404);
    // Addressed through another workspace: a volume has one address, its own workspace.
    expect((await gw.call('POST', `${vols(wsB)}/${vol}/make-shared`)).status).toBe(404);
    expect((await gw.call('GET', `${vols(missing)}/shared`)).status).toBe(404);
    const outsider = await createKey(gw, 'elsewhere', ['admin']);
    expect((await gw.call('GET', `/v1/orgs/${ORG}/volumes/shared`, undefined, outsider)).status).toBe(404);
    expect((await gw.call('POST', `${base}/make-private`, undefined, outsider)).status).toBe(404);
    const theirs = await gw.call('GET', '/v1/orgs/elsewhere/volumes/shared', undefined, outsider);
    expect(theirs.body).toMatchObject({ total: 0, volumes: [] });
  });
});

describe('sharing over GraphQL', () => {
  it('makeVolumeShared / makeVolumePrivate, sharedVolumes, and read-only access for an unmounted app', async () => {
    const v = await volume(wsB, { name: 'gql-shared', tags: ['g'] });
    const share = await gw.gql(`mutation($id: ID!) { makeVolumeShared(id: $id) { id isShared version modifiedBy } }`, { id: v });
    expect(share.body.errors).toBeUndefined();
    expect(share.body.data.makeVolumeShared).toEqual({ id: v, isShared: true, version: 2, modifiedBy: 'admin' });
    await gw.call('PUT', `${vols(wsB)}/${v}/entries/doc.md`, { content_text: 'shared doc' });

    const read = await gw.gql(
      `query($id: ID!) { volume(id: $id) { name isShared entry(path: "/doc.md") { contentText } } }`,
      { id: v },
      reader,
    );
    expect(read.body.data.volume).toEqual({ name: 'gql-shared', isShared: true, entry: { contentText: 'shared doc' } });
    const write = await gw.gql(
      `mutation($id: ID!) { writeEntry(volumeId: $id, path: "/doc.md", input: { contentText: "mine" }) { created } }`,
      { id: v },
      reader,
    );
    expect(codeOf(write.body)).toBe('FORBIDDEN');
    expect(codeOf((await gw.gql(`mutation($id: ID!) { makeVolumePrivate(id: $id) { id } }`, { id: v }, reader)).body)).toBe('FORBIDDEN');

    const list = await gw.gql(
      `{ sharedVolumes(search: "GQL", sort: "name:desc", first: 10) { totalCount edges { node { name isShared workspaceId } } } }`,
      {},
      reader,
    );
    expect(list.body.errors).toBeUndefined();
    expect(list.body.data.sharedVolumes).toEqual({
      totalCount: 1,
      edges: [{ node: { name: 'gql-shared', isShared: true, workspaceId: wsB } }],
    });
    const all = await gw.gql(
      `query($org: ID) { sharedVolumes(orgId: $org, sort: "name:asc", offset: 1, first: 10) { totalCount edges { node { name } } } }`,
      {
        org: ORG,
      },
    );
    expect(all.body.errors).toBeUndefined();
    expect(all.body.data.sharedVolumes.edges.length).toBe(all.body.data.sharedVolumes.totalCount - 1);

    const priv = await gw.gql(`mutation($id: ID!) { makeVolumePrivate(id: $id) { isShared version } }`, { id: v });
    expect(priv.body.data.makeVolumePrivate).toEqual({ isShared: false, version: 3 });
    expect((await gw.gql(`query($id: ID!) { volume(id: $id) { id } }`, { id: v }, reader)).body.data.volume).toBeNull();

    for (const [query, code] of [
      ['{ sharedVolumes(sort: "size") { totalCount } }', 'VALIDATION_FAILED'],
      ['{ sharedVolumes(offset: -1) { totalCount } }', 'VALIDATION_FAILED'],
      ['{ sharedVolumes(offset: 1, after: "x") { totalCount } }', 'VALIDATION_FAILED'],
      ['{ sharedVolumes { totalCount } }', 'VALIDATION_FAILED'], // the platform key must name the org
      ['mutation { makeVolumeShared(id: "01900000-0000-7000-8000-000000000000") { id } }', 'NOT_FOUND'],
    ] as const) {
      expect(codeOf((await gw.gql(query)).body), query).toBe(code);
    }
  });
});
