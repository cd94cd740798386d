import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';

/**
 * Entry access by app keys (mount level × path inside/outside the mount × every route) and by
 * scopes and organisations. Outside a mount a path does not exist; inside a read mount it is read-only.
 */
let gw: TestGateway;
let v: TestVolume;
const keys = {} as Record<'read' | 'write' | 'admin' | 'narrow', string>;
const TREE = ['/notes/a.md', '/notes/.x.md', '/notes/sub/b.md', '/notes/c.txt', '/secret/s.md', '/readme.md'];

beforeAll(async () => {
  gw = await startGateway();
  v = await newVolume(gw, 'acme');
  for (const path of TREE) await putText(gw, v, path, `admin wrote ${path}`);
  for (const [level, app, pattern] of [
    ['read', 'reader', '/notes/**'],
    ['write', 'writer', '/notes/**'],
    ['admin', 'owner', '/notes/**'],
    ['write', 'narrow', '/notes/*.md'],
  ] as const) {
    const res = await gw.call('POST', v.mounts, { app_id: app, access_level: level, path_pattern: pattern });
    expect(res.status).toBe(201);
    keys[app === 'narrow' ? 'narrow' : level] = await createKey(gw, 'acme', ['entries:read', 'entries:write', 'volumes:read'], app);
  }
});
afterAll(async () => {
  await gw?.stop();
});

const APP = { read: 'reader', write: 'writer', admin: 'owner' } as const;
const LEVELS = ['read', 'write', 'admin'] as const;
const paths = (list: { path: string }[]) => list.map((e) => e.path);

function expectNotFound(res: { status: number; body: any }, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(404);
  expect(res.body.error, what).toBe('RESOURCE_NOT_FOUND');
}
function expectForbidden(res: { status: number; body: any }, permission: string, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(403);
  expect(res.body, what).toMatchObject({ error: 'FORBIDDEN', details: { required_permission: permission } });
}
/** What the admin sees at a path: its text, or null. */
async function adminText(path: string): Promise<string | null> {
  const res = await gw.call('GET', v.entry(path));
  return res.status === 200 ? res.body.content_text : null;
}

describe.each(LEVELS)('an app key with a %s mount on /notes/**', (level) => {
  const canWrite = level !== 'read';
  const app = APP[level];

  it('reads inside; outside answers 404', async () => {
    const inside = await gw.call('GET', v.entry('/notes/sub/b.md'), undefined, keys[level]);
    expect(inside.status).toBe(200);
    expect(inside.body.content_text).toBe('admin wrote /notes/sub/b.md');
    for (const path of ['/secret/s.md', '/readme.md', '/secret/missing']) {
      const res = await gw.call('GET', v.entry(path), undefined, keys[level]);
      expectNotFound(res, path);
      expect(res.body.details).toEqual({ resource_type: 'entry', resource_id: path });
    }
  });

  it('lists only what it can read (entries, directories)', async () => {
    const root = await gw.call('GET', v.list('/'), undefined, keys[level]);
    expect(root.body).toMatchObject({ directories: ['/notes/'], entries: [] });
    // Everything under /notes is readable: the app sees exactly what the admin sees there.
    const notes = await gw.call('GET', v.list('/notes'), undefined, keys[level]);
    const adminNotes = await gw.call('GET', v.list('/notes'));
    expect(notes.body.directories).toEqual(['/notes/sub/']);
    expect(paths(notes.body.entries)).toEqual(paths(adminNotes.body.entries));
    expect(paths(notes.body.entries)).toEqual(expect.arrayContaining(['/notes/.x.md', '/notes/a.md', '/notes/c.txt']));
    expect((await gw.call('GET', v.list('/secret'), undefined, keys[level])).body).toMatchObject({ directories: [], entries: [] });
  });

  it(`PUT inside ${canWrite ? 'writes with its app id' : 'is 403 path:write'}; outside is 404 and writes nothing`, async () => {
    const path = `/notes/new-${level}.md`;
    const res = await gw.call('PUT', v.entry(path), { content_text: 'mine', written_by_app_id: 'forged' }, keys[level]);
    if (canWrite) {
      expect(res.status).toBe(201);
      expect(res.body.entry.written_by_app_id).toBe(app);
      const replaced = await gw.call('PUT', v.entry('/notes/a.md'), { content_text: `by ${app}` }, keys[level]);
      expect(replaced.status).toBe(200);
      expect(replaced.body.entry.written_by_app_id).toBe(app);
    } else {
      expectForbidden(res, 'path:write', 'read mount');
      expect(await adminText(path)).toBeNull();
    }
    expectNotFound(await gw.call('PUT', v.entry('/secret/s.md'), { content_text: 'overwritten' }, keys[level]), 'replace outside');
    expectNotFound(await gw.call('PUT', v.entry('/secret/new'), { content_text: 'planted' }, keys[level]), 'create outside');
    expect(await adminText('/secret/s.md')).toBe('admin wrote /secret/s.md');
    expect(await adminText('/secret/new')).toBeNull();
  });

  it(`DELETE inside ${canWrite ? 'deletes' : 'is 403'}; outside is 404 and deletes nothing`, async () => {
    const path = `/notes/del-${level}`;
    await putText(gw, v, path);
    const res = await gw.call('DELETE', v.entry(path), undefined, keys[level]);
    if (canWrite) expect(res.status).toBe(200);
    else expectForbidden(res, 'path:write', 'delete with a read mount');
    expect(await adminText(path)).toBe(canWrite ? null : `text of ${path}`);
    expectNotFound(await gw.call('DELETE', v.entry('/secret/s.md'), undefined, keys[level]), 'delete outside');
    expect(await adminText('/secret/s.md')).not.toBeNull();
  });

  it(`moves ${canWrite ? 'within' : 'nothing inside'} the mount and never across it`, async () => {
    const from = `/notes/mv-${level}`;
    await putText(gw, v, from);
    const within = await gw.call('POST', v.move, { from, to: `${from}-moved` }, keys[level]);
    if (canWrite) expect(within.status).toBe(200);
    else expectForbidden(within, 'path:write', 'move with a read mount');
    const current = canWrite ? `${from}-moved` : from;
    // Out of the mount, into it from outside, and over an entry outside it: all invisible paths.
    const out = await gw.call('POST', v.move, { from: current, to: '/secret/exfil' }, keys[level]);
    if (canWrite) expectNotFound(out, 'move out');
    else expectForbidden(out, 'path:write', 'move out with a read mount');
    expectNotFound(await gw.call('POST', v.move, { from: '/secret/s.md', to: '/notes/stolen' }, keys[level]), 'move in');
    expectNotFound(await gw.call('POST', v.move, { from: '/readme.md', to: '/secret/x' }, keys[level]), 'move outside');
    if (canWrite) {
      const over = await gw.call('POST', v.move, { from: current, to: '/secret/s.md', overwrite: true }, keys[level]);
      expectNotFound(over, 'overwrite outside');
    }
    expect(await adminText('/secret/s.md')).toBe('admin wrote /secret/s.md');
    expect(await adminText('/notes/stolen')).toBeNull();
    expect(await adminText('/secret/exfil')).toBeNull();
    expect(await adminText(current)).not.toBeNull();
  });

  it('GraphQL: entry, entries and directory show only readable paths; writes follow the mount', async () => {
    const q = `query($id: ID!) { volume(id: $id) {
      inside: entry(path: "/notes/a.md") { path } outside: entry(path: "/secret/s.md") { path }
      entries { totalCount edges { node { path } } } directory(path: "/") { directories entries { path } } } }`;
    const read = await gw.gql(q, { id: v.volumeId }, keys[level]);
    expect(read.body.errors).toBeUndefined();
    const vol = read.body.data.volume;
    expect(vol).toMatchObject({ inside: { path: '/notes/a.md' }, outside: null, directory: { directories: ['/notes/'], entries: [] } });
    expect(vol.entries.edges.every((e: any) => e.node.path.startsWith('/notes/'))).toBe(true);
    expect(vol.entries.totalCount).toBe(vol.entries.edges.length);
    const adminCount = await gw.gql(`query($id: ID!) { volume(id: $id) { entries(prefix: "/notes") { totalCount } } }`, { id: v.volumeId });
    expect(vol.entries.totalCount).toBe(adminCount.body.data.volume.entries.totalCount);

    const write = `mutation($id: ID!, $p: String!) { writeEntry(volumeId: $id, path: $p, input: { contentText: "g", executionId: "run-1" }) {
      created entry { path writtenByAppId writtenByExecutionId } } }`;
    const del = 'mutation($id: ID!, $p: String!) { deleteEntry(volumeId: $id, path: $p) { message } }';
    const inside = await gw.gql(write, { id: v.volumeId, p: `/notes/gql-${level}` }, keys[level]);
    if (canWrite) {
      expect(inside.body.data.writeEntry).toEqual({
        created: true,
        entry: { path: `/notes/gql-${level}`, writtenByAppId: app, writtenByExecutionId: 'run-1' },
      });
      const gone = await gw.gql(del, { id: v.volumeId, p: `/notes/gql-${level}` }, keys[level]);
      expect(gone.body.data.deleteEntry.message).toBe('Entry deleted successfully');
    } else {
      expect(inside.body.errors[0].extensions).toMatchObject({ code: 'FORBIDDEN', required_permission: 'path:write' });
      const denied = await gw.gql(del, { id: v.volumeId, p: '/notes/a.md' }, keys[level]);
      expect(denied.body.errors[0].extensions.code).toBe('FORBIDDEN');
    }
    for (const op of [write, del]) {
      const res = await gw.gql(op, { id: v.volumeId, p: '/secret/s.md' }, keys[level]);
      expect(res.body.errors?.[0]?.extensions?.code, op).toBe('NOT_FOUND');
    }
    expect(await adminText('/secret/s.md')).toBe('admin wrote /secret/s.md');
  });
});

describe('glob mounts', () => {
  it('agree between reads and listings for every path (/notes/*.md, dotfiles included)', async () => {
    const visible = { '/notes/a.md': true, '/notes/.x.md': true, '/notes/sub/b.md': false, '/notes/c.txt': false, '/readme.md': false };
    for (const [path, readable] of Object.entries(visible)) {
      const res = await gw.call('GET', v.entry(path), undefined, keys.narrow);
      expect(res.status, path).toBe(readable ? 200 : 404);
    }
    const listed = await gw.call('GET', v.list('/notes/'), undefined, keys.narrow);
    // /notes/sub/ holds nothing this app may read, so it is not a directory for it.
    expect(listed.body.directories).toEqual([]);
    const listedPaths = paths(listed.body.entries);
    expect(listedPaths.filter((p) => p in visible)).toEqual(['/notes/.x.md', '/notes/a.md']);
    const gql = await gw.gql(
      `query($id: ID!) { volume(id: $id) { entries { totalCount edges { node { path } } } } }`,
      { id: v.volumeId },
      keys.narrow,
    );
    const gqlPaths: string[] = gql.body.data.volume.entries.edges.map((e: any) => e.node.path);
    expect(gqlPaths).toEqual(listedPaths);
    expect(gql.body.data.volume.entries.totalCount).toBe(listedPaths.length);
    for (const p of gqlPaths) expect(p).toMatch(/^\/notes\/[^/]+\.md$/);
    expectNotFound(await gw.call('PUT', v.entry('/notes/sub/new.md'), { content_text: 'x' }, keys.narrow), 'write below the glob');
    expect((await gw.call('PUT', v.entry('/notes/z.md'), { content_text: 'x' }, keys.narrow)).status).toBe(201);
  });
});

describe('scopes and organisations', () => {
  it('needs entries:read to read and entries:write to write', async () => {
    const writeOnly = await createKey(gw, 'acme', ['entries:write']);
    const readOnly = await createKey(gw, 'acme', ['entries:read', 'volumes:read']);
    expectForbidden(await gw.call('GET', v.entry('/readme.md'), undefined, writeOnly), 'entries:read', 'GET');
    expectForbidden(await gw.call('GET', v.list('/'), undefined, writeOnly), 'entries:read', 'list');
    expect((await gw.call('GET', v.entry('/readme.md'), undefined, readOnly)).status).toBe(200);
    expectForbidden(await gw.call('PUT', v.entry('/scoped'), { content_text: 'x' }, readOnly), 'entries:write', 'PUT');
    expectForbidden(await gw.call('DELETE', v.entry('/readme.md'), undefined, readOnly), 'entries:write', 'DELETE');
    expectForbidden(await gw.call('POST', v.move, { from: '/readme.md', to: '/r2' }, readOnly), 'entries:write', 'move');
    const gqlWrite = await gw.gql(
      `mutation($id: ID!) { writeEntry(volumeId: $id, path: "/scoped", input: { contentText: "x" }) { created } }`,
      { id: v.volumeId },
      readOnly,
    );
    expect(gqlWrite.body.errors[0].extensions).toMatchObject({ code: 'FORBIDDEN', required_permission: 'entries:write' });
    const volumesOnly = await createKey(gw, 'acme', ['volumes:read']);
    const gqlRead = await gw.gql(`query($id: ID!) { volume(id: $id) { entries { totalCount } } }`, { id: v.volumeId }, volumesOnly);
    expect(gqlRead.body.errors[0].extensions).toMatchObject({ code: 'FORBIDDEN', required_permission: 'entries:read' });
    expect(await adminText('/scoped')).toBeNull();
    expect(await adminText('/readme.md')).not.toBeNull();
    // An app key's scopes bind too, whatever its mount allows.
    const appReadOnly = await createKey(gw, 'acme', ['entries:read'], 'writer');
    expectForbidden(await gw.call('PUT', v.entry('/notes/a.md'), { content_text: 'x' }, appReadOnly), 'entries:write', 'app key');
  });

  it('answers 404 to another organisation and to an app without a mount', async () => {
    const stranger = await createKey(gw, 'other', ['admin']);
    const unmounted = await createKey(gw, 'acme', ['entries:read', 'entries:write', 'volumes:read'], 'nobody');
    for (const key of [stranger, unmounted]) {
      expectNotFound(await gw.call('GET', v.entry('/readme.md'), undefined, key), 'GET');
      expectNotFound(await gw.call('GET', v.list('/'), undefined, key), 'list');
      expectNotFound(await gw.call('PUT', v.entry('/planted'), { content_text: 'x' }, key), 'PUT');
      expectNotFound(await gw.call('DELETE', v.entry('/readme.md'), undefined, key), 'DELETE');
      expectNotFound(await gw.call('POST', v.move, { from: '/readme.md', to: '/moved' }, key), 'move');
      const gql = await gw.gql(
        `mutation($id: ID!) { writeEntry(volumeId: $id, path: "/planted", input: { contentText: "x" }) { created } }`,
        { id: v.volumeId },
        key,
      );
      expect(gql.body.errors[0].extensions.code).toBe('NOT_FOUND');
      expect((await gw.gql(`query($id: ID!) { volume(id: $id) { id } }`, { id: v.volumeId }, key)).body.data.volume).toBeNull();
    }
    // The other org's own route to this volume finds nothing either.
    const viaOwnOrg = `/v1/orgs/other/workspaces/${v.workspaceId}/volumes/${v.volumeId}/entries/readme.md`;
    expectNotFound(await gw.call('GET', viaOwnOrg, undefined, stranger), 'own org route');
    expect(await adminText('/planted')).toBeNull();
    expect(await adminText('/readme.md')).not.toBeNull();
  });
});
