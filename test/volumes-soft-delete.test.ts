import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purgeDeletedVolumes } from '../src/domain/volumes/lifecycle.js';
import { ADMIN_KEY, createKey, jobsIdle, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { subscribe } from './helpers/graphql-ws.js';
import { indexed } from './helpers/search.js';
import { fetchAndHash, listKeys, sha256, upload } from './helpers/uploads.js';

// Soft delete, restore and purge (issue 6 item 5), over real HTTP, GraphQL and graphql-ws.

let gw: TestGateway;
const ORG = 'org-softdel';
const DAY_MS = 24 * 60 * 60 * 1000;
const MISSING = '01900000-0000-7000-8000-000000000000';

beforeAll(async () => {
  // One day of retention: purges are driven by calling the purge with a later clock, never by waiting.
  gw = await startGateway({ VOLUME_RETENTION_DAYS: '1', JOB_POLL_MS: '50' });
});
afterAll(async () => {
  await gw?.stop();
});

const prisma = () => gw.app.database.prisma;
const restore = (v: TestVolume, body?: unknown, key?: string) => gw.call('POST', `${v.volumeUrl}/restore`, body, key);
const del = (v: TestVolume, query = '', key?: string) => gw.call('DELETE', `${v.volumeUrl}${query}`, undefined, key);
const volumesUrl = (v: TestVolume) => `/v1/orgs/${v.org}/workspaces/${v.workspaceId}/volumes`;
const bucketOf = async (v: TestVolume) =>
  (await prisma().workspace.findUniqueOrThrow({ where: { id: v.workspaceId }, select: { s3Bucket: true } })).s3Bucket;

/** entryChanged over graphql-ws: an error, or events once it is open. */
const subscribeEntries = (key: string, v: TestVolume) =>
  subscribe(gw.url, key, `subscription($id: ID!) { entryChanged(volumeId: $id) { path change } }`, { id: v.volumeId });

describe('soft delete hides a volume from every access path until it is restored', () => {
  let v: TestVolume;
  let appKey: string;
  let fileSha: string;
  const file = Buffer.from('bytes kept safe while the volume is deleted\n'.repeat(50));

  beforeAll(async () => {
    v = await newVolume(gw, ORG, { name: 'precious' });
    await putText(gw, v, '/notes/bees.md', 'Beekeeping: a hive needs a queen, worker bees and honey stores for winter.');
    const up = await upload(gw, `${v.entry('/files/data.txt')}/upload`, { data: file, filename: 'data.txt' });
    expect(up.status, JSON.stringify(up.body)).toBe(201);
    fileSha = sha256(file);
    await indexed(gw, v.volumeId, 2);
    expect((await gw.call('POST', v.mounts, { app_id: 'reader-app', path_pattern: '/**', access_level: 'write' })).status).toBe(201);
    appKey = await createKey(
      gw,
      ORG,
      ['workspaces:read', 'volumes:read', 'volumes:write', 'entries:read', 'entries:write', 'search', 'locks:write'],
      'reader-app',
    );
    const lock = await gw.call('POST', `${v.volumeUrl}/locks`, { partition: 'jobs', app_id: 'reader-app', ttl_seconds: 3600 }, appKey);
    expect(lock.status, JSON.stringify(lock.body)).toBe(201);
  });

  it('answers every route 404 for org and app keys alike, and lists and search leave it out', async () => {
    const before = (await gw.call('GET', v.volumeUrl)).body;
    const res = await del(v);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ message: 'Volume deleted successfully' });

    for (const key of [ADMIN_KEY, appKey]) {
      for (const [method, route, body] of [
        ['GET', v.volumeUrl],
        ['PATCH', v.volumeUrl, { description: 'x' }],
        ['DELETE', v.volumeUrl],
        ['GET', v.entry('/notes/bees.md')],
        ['PUT', v.entry('/notes/new.md'), { content_text: 'lost?' }],
        ['GET', `${v.entry('/files/data.txt')}/download`],
        ['GET', v.list('/')],
        ['POST', `${v.volumeUrl}/search`, { query: 'bees' }],
        ['GET', v.mounts],
        ['GET', `${v.volumeUrl}/locks`],
        ['POST', `${v.volumeUrl}/locks`, { partition: 'other', app_id: 'reader-app' }],
        ['POST', `${v.volumeUrl}/reindex`, {}],
        ['POST', `${v.volumeUrl}/make-shared`, {}],
      ] as [string, string, unknown?][]) {
        const got = await gw.call(method, route, body, key);
        expect(got.status, `${method} ${route}`).toBe(404);
        expect(got.body.error).toBe('RESOURCE_NOT_FOUND');
      }
    }
    const list = await gw.call('GET', volumesUrl(v));
    expect(list.body.volumes.map((x: { volume_id: string }) => x.volume_id)).not.toContain(v.volumeId);
    const all = await gw.call('POST', `${volumesUrl(v)}/search-all`, { query: 'honey bees queen' });
    expect(all.status).toBe(200);
    expect(all.body.results.filter((r: { volume_id: string }) => r.volume_id === v.volumeId)).toEqual([]);
    // The app's only volume in the workspace is gone: so is the workspace, for the app.
    expect((await gw.call('GET', `/v1/orgs/${ORG}/workspaces/${v.workspaceId}`, undefined, appKey)).status).toBe(404);

    // GraphQL: node lookup, entries and subscriptions.
    const q = await gw.gql(`query($id: ID!) { volume(id: $id) { id } }`, { id: v.volumeId });
    expect(q.body.data.volume).toBeNull();
    const e = await gw.gql(`mutation($id: ID!) { writeEntry(volumeId: $id, path: "/x.md", input: { contentText: "x" }) { created } }`, {
      id: v.volumeId,
    });
    expect(e.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const sub = subscribeEntries(appKey, v);
    await waitFor(async () => sub.errors.length > 0);
    expect(JSON.stringify(sub.errors)).toContain('NOT_FOUND');
    await sub.close();

    // Rows and objects are all still there, for the restore; the row says deleted, version +1.
    const row = await prisma().volume.findUniqueOrThrow({ where: { id: v.volumeId } });
    expect(row).toMatchObject({ status: 'deleted', version: before.version + 1, modifiedBy: 'admin' });
    expect(row.deletedAt).toBeInstanceOf(Date);
    expect(await prisma().entry.count({ where: { volumeId: v.volumeId } })).toBe(2);
    expect((await listKeys(gw, await bucketOf(v), `volumes/${v.volumeId}/`)).length).toBe(1);
  });

  it('lists it for admins under status=deleted, with when it was deleted and until when it can be restored', async () => {
    const res = await gw.call('GET', `${volumesUrl(v)}?status=deleted`);
    expect(res.status).toBe(200);
    expect(res.body.total).toBe(1);
    const [listed] = res.body.volumes;
    expect(listed).toMatchObject({ volume_id: v.volumeId, status: 'deleted', name: 'precious' });
    expect(new Date(listed.restorable_until).getTime() - new Date(listed.deleted_at).getTime()).toBe(DAY_MS);
    // Reading keys cannot list what they could not restore.
    const reader = await createKey(gw, ORG, ['volumes:read']);
    const refused = await gw.call('GET', `${volumesUrl(v)}?status=deleted`, undefined, reader);
    expect(refused.status).toBe(403);
    expect(refused.body.details.required_permission).toBe('volumes:write');
    const g = await gw.gql(
      `query($ws: ID!) { volumes(workspaceId: $ws, status: deleted) { totalCount edges { node { id status deletedAt restorableUntil } } } }`,
      {
        ws: v.workspaceId,
      },
    );
    expect(g.body.data.volumes.totalCount).toBe(1);
    expect(g.body.data.volumes.edges[0].node).toMatchObject({
      id: v.volumeId,
      status: 'deleted',
      restorableUntil: listed.restorable_until,
    });
  });

  it('restores it with its entries, files, index, mounts and locks intact; version and modified_by move', async () => {
    const writer = await createKey(gw, ORG, ['volumes:write']);
    const res = await restore(v, undefined, writer);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.message).toBe('Volume restored successfully');
    const row = await prisma().volume.findUniqueOrThrow({ where: { id: v.volumeId } });
    expect(res.body.volume).toMatchObject({ status: 'active', deleted_at: null, restorable_until: null, version: row.version });
    expect(res.body.volume.modified_by).toMatch(/^key:/);
    expect(res.headers.get('etag')).toBe(`"${row.version}"`);

    expect((await gw.call('GET', v.entry('/notes/bees.md'), undefined, appKey)).status).toBe(200);
    const dl = await gw.call('GET', `${v.entry('/files/data.txt')}/download`, undefined, appKey);
    expect(dl.status).toBe(200);
    const fetched = await fetchAndHash(dl.body.download_url);
    expect(fetched.sha256).toBe(fileSha);
    const hits = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'honey bees queen' }, appKey);
    expect(hits.body.results[0]?.path).toBe('/notes/bees.md');
    const locks = await gw.call('GET', `${v.volumeUrl}/locks`, undefined, appKey);
    expect(locks.body.locks.map((l: { partition: string }) => l.partition)).toEqual(['jobs']);
    await putText(gw, v, '/notes/after.md', 'written after the restore', appKey);
    expect((await gw.call('GET', `/v1/orgs/${ORG}/workspaces/${v.workspaceId}`, undefined, appKey)).status).toBe(200);
    const sub = subscribeEntries(appKey, v);
    await waitFor(async () => {
      await putText(gw, v, '/notes/probe.md', 'probe', appKey);
      return sub.events.length > 0;
    });
    expect(sub.errors).toEqual([]);
    await sub.close();
  });

  it('resumes indexing the delete cut short', async () => {
    const w = await newVolume(gw, ORG);
    await putText(gw, w, '/late.md', 'volcanic soil grows grapes');
    expect((await del(w)).status).toBe(200);
    await jobsIdle(gw);
    expect(await prisma().job.count({ where: { volumeId: w.volumeId, kind: 'index_entry' } })).toBe(0);
    // Whether the job ran before the delete or found the volume gone, leave what the latter leaves:
    // an entry never indexed and no job for it.
    await prisma().chunk.deleteMany({ where: { volumeId: w.volumeId } });
    await prisma().entry.updateMany({ where: { volumeId: w.volumeId }, data: { isIndexed: false, contentHash: null } });
    expect((await restore(w)).status).toBe(200);
    await indexed(gw, w.volumeId, 1);
    expect((await gw.call('POST', `${w.volumeUrl}/search`, { query: 'volcanic grapes' })).body.results).toHaveLength(1);
  });
});

describe('restore: what it refuses', () => {
  it('404 for an unknown volume, a live one, one past retention; 422 for a bad name', async () => {
    const v = await newVolume(gw, ORG);
    expect((await gw.call('POST', `${volumesUrl(v)}/${MISSING}/restore`)).status).toBe(404);
    const live = await restore(v);
    expect(live.status).toBe(404);
    expect(live.body.details).toEqual({ resource_type: 'volume', resource_id: v.volumeId });
    expect((await del(v)).status).toBe(200);
    expect((await restore(v, { name: '' })).status).toBe(422);
    // Past retention (deleted two days ago): gone for good, even before the purge has run.
    await prisma().volume.update({ where: { id: v.volumeId }, data: { deletedAt: new Date(Date.now() - 2 * DAY_MS) } });
    expect((await restore(v)).status).toBe(404);
    expect((await gw.call('GET', `${volumesUrl(v)}?status=deleted`)).body.total).toBe(0);
  });

  it('a new volume may take a deleted one’s name; restoring that one is then 409, or under another name 200', async () => {
    const v = await newVolume(gw, ORG, { name: 'shared-name' });
    expect((await del(v)).status).toBe(200);
    const twin = await gw.call('POST', volumesUrl(v), { name: 'shared-name' });
    expect(twin.status, JSON.stringify(twin.body)).toBe(201);
    const clash = await restore(v);
    expect(clash.status).toBe(409);
    expect(clash.body).toMatchObject({
      error: 'CONFLICT',
      details: { field: 'name', value: 'shared-name', volume_id: twin.body.volume.volume_id },
    });
    const renamed = await restore(v, { name: 'shared-name-old' });
    expect(renamed.status, JSON.stringify(renamed.body)).toBe(200);
    expect(renamed.body.volume).toMatchObject({ name: 'shared-name-old', status: 'active' });
    // Names stay unique among live volumes.
    expect((await gw.call('PATCH', v.volumeUrl, { name: 'shared-name' })).status).toBe(409);
  });

  it('needs volumes:write; app keys need the whole-volume admin mount, else the deleted volume does not exist for them', async () => {
    const v = await newVolume(gw, ORG);
    expect((await gw.call('POST', v.mounts, { app_id: 'adm', path_pattern: '/**', access_level: 'admin' })).status).toBe(201);
    expect((await gw.call('POST', v.mounts, { app_id: 'rdr', path_pattern: '/**', access_level: 'read' })).status).toBe(201);
    const admin = await createKey(gw, ORG, ['volumes:read', 'volumes:write'], 'adm');
    const reader = await createKey(gw, ORG, ['volumes:read', 'volumes:write'], 'rdr');
    const readOnly = await createKey(gw, ORG, ['volumes:read']);
    expect((await del(v, '', reader)).status).toBe(403);
    expect((await del(v, '', admin)).status).toBe(200);
    expect((await restore(v, undefined, readOnly)).status).toBe(403);
    expect((await restore(v, undefined, reader)).status).toBe(404);
    expect((await restore(v, undefined, admin)).status).toBe(200);
    // Another organisation's key: 404.
    const other = await createKey(gw, 'org-softdel-other', ['admin']);
    expect((await del(v)).status).toBe(200);
    expect((await restore(v, undefined, other)).status).toBe(404);
  });
});

describe('permanent delete and the purge', () => {
  it('?permanent=true removes rows, chunks and objects now, for a live or an already deleted volume', async () => {
    for (const softFirst of [false, true]) {
      const v = await newVolume(gw, ORG);
      await putText(gw, v, '/a.md', 'some text to chunk and embed');
      expect((await upload(gw, `${v.entry('/f.bin')}/upload`, { data: Buffer.from('abc') })).status).toBe(201);
      await indexed(gw, v.volumeId, 2);
      expect((await gw.call('POST', v.mounts, { app_id: 'bot' })).status).toBe(201);
      const bucket = await bucketOf(v);
      if (softFirst) expect((await del(v)).status).toBe(200);
      expect((await del(v, '?permanent=true')).status).toBe(200);
      expect(await prisma().volume.count({ where: { id: v.volumeId } })).toBe(0);
      expect(await prisma().entry.count({ where: { volumeId: v.volumeId } })).toBe(0);
      expect(await prisma().chunk.count({ where: { volumeId: v.volumeId } })).toBe(0);
      expect(await prisma().mount.count({ where: { volumeId: v.volumeId } })).toBe(0);
      expect(await listKeys(gw, bucket, `volumes/${v.volumeId}/`)).toEqual([]);
      expect((await restore(v)).status).toBe(404);
    }
    const v = await newVolume(gw, ORG);
    expect((await del(v, '?permanent=maybe')).status).toBe(422);
  });

  it('purges deleted volumes past retention with their objects and chunks, once across concurrent runs, sparing restored ones', async () => {
    const doomed = await Promise.all([newVolume(gw, ORG), newVolume(gw, ORG), newVolume(gw, ORG)]);
    const spared = await newVolume(gw, ORG);
    for (const v of [...doomed, spared]) {
      await putText(gw, v, '/t.md', 'text with chunks');
      expect((await upload(gw, `${v.entry('/f.bin')}/upload`, { data: Buffer.from(v.volumeId) })).status).toBe(201);
      await indexed(gw, v.volumeId, 2);
      expect((await del(v)).status).toBe(200);
    }
    expect((await restore(spared)).status).toBe(200);
    const ids = doomed.map((v) => v.volumeId);

    // Within retention nothing goes.
    const early = await purgeDeletedVolumes(gw.app.runtime, new Date(Date.now() + DAY_MS / 2));
    expect(early.filter((id) => ids.includes(id) || id === spared.volumeId)).toEqual([]);
    // Past it, three "replicas" purging at once remove each volume exactly once.
    const later = new Date(Date.now() + DAY_MS + 60_000);
    const runs = await Promise.all([
      purgeDeletedVolumes(gw.app.runtime, later),
      purgeDeletedVolumes(gw.app.runtime, later),
      purgeDeletedVolumes(gw.app.runtime, later),
    ]);
    // (Volumes other tests left deleted go too.)
    const purged = runs.flat();
    expect(new Set(purged).size).toBe(purged.length);
    expect(purged).toEqual(expect.arrayContaining(ids));
    expect(await prisma().volume.count({ where: { id: { in: ids } } })).toBe(0);
    expect(await prisma().chunk.count({ where: { volumeId: { in: ids } } })).toBe(0);
    for (const v of doomed) expect(await listKeys(gw, await bucketOf(v), `volumes/${v.volumeId}/`)).toEqual([]);

    expect((await gw.call('GET', spared.volumeUrl)).status).toBe(200);
    expect((await listKeys(gw, await bucketOf(spared), `volumes/${spared.volumeId}/`)).length).toBe(1);
  });
});

describe('GraphQL', () => {
  it('deleteVolume hides, undeleteVolume restores (optionally renamed), deleteVolume(permanent) removes', async () => {
    const v = await newVolume(gw, ORG, { name: 'gql-vol' });
    const ver = (await gw.call('GET', v.volumeUrl)).body.version as number;
    const del1 = await gw.gql(`mutation($id: ID!) { deleteVolume(id: $id) { id message } }`, { id: v.volumeId });
    expect(del1.body.data.deleteVolume).toEqual({ id: v.volumeId, message: 'Volume deleted successfully' });
    expect((await gw.gql(`query($id: ID!) { volume(id: $id) { id } }`, { id: v.volumeId })).body.data.volume).toBeNull();
    const again = await gw.gql(`mutation($id: ID!) { deleteVolume(id: $id) { id } }`, { id: v.volumeId });
    expect(again.body.errors[0].extensions.code).toBe('NOT_FOUND');

    const undelete = `mutation($id: ID!, $name: String) { undeleteVolume(id: $id, name: $name) { id name status version deletedAt restorableUntil } }`;
    const back = await gw.gql(undelete, { id: v.volumeId });
    expect(back.body.data.undeleteVolume).toEqual({
      id: v.volumeId,
      name: 'gql-vol',
      status: 'active',
      version: ver + 2,
      deletedAt: null,
      restorableUntil: null,
    });
    const live = await gw.gql(undelete, { id: v.volumeId });
    expect(live.body.errors[0].extensions.code).toBe('NOT_FOUND');
    expect((await gw.gql(undelete, { id: MISSING })).body.errors[0].extensions.code).toBe('NOT_FOUND');

    await gw.gql(`mutation($id: ID!) { deleteVolume(id: $id) { id } }`, { id: v.volumeId });
    expect((await gw.call('POST', volumesUrl(v), { name: 'gql-vol' })).status).toBe(201);
    expect((await gw.gql(undelete, { id: v.volumeId })).body.errors[0].extensions.code).toBe('CONFLICT');
    expect((await gw.gql(undelete, { id: v.volumeId, name: 'gql-vol-2' })).body.data.undeleteVolume.name).toBe('gql-vol-2');

    const gone = await gw.gql(`mutation($id: ID!) { deleteVolume(id: $id, permanent: true) { id } }`, { id: v.volumeId });
    expect(gone.body.data.deleteVolume.id).toBe(v.volumeId);
    expect(await prisma().volume.count({ where: { id: v.volumeId } })).toBe(0);
    expect((await gw.gql(undelete, { id: v.volumeId })).body.errors[0].extensions.code).toBe('NOT_FOUND');
  });

  it('Workspace.volumes(status: deleted) lists restorable volumes', async () => {
    const v = await newVolume(gw, ORG);
    await gw.gql(`mutation($id: ID!) { deleteVolume(id: $id) { id } }`, { id: v.volumeId });
    const res = await gw.gql(
      `query($ws: ID!) { workspace(id: $ws) { live: volumes { totalCount } deleted: volumes(status: deleted) { totalCount edges { node { id } } } } }`,
      { ws: v.workspaceId },
    );
    expect(res.body.data.workspace.live.totalCount).toBe(0);
    expect(res.body.data.workspace.deleted.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual([v.volumeId]);
  });
});
