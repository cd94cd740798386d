import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ORPHAN_GRACE_MS, reconcileWorkspace } from '../src/domain/maintenance/maintenance.js';
import { signLocalDownload } from '../src/storage/local.js';
import { ADMIN_KEY, createKey, startGateway, type TestGateway } from './helpers/app.js';
import { expectExactUsage } from './helpers/entries.js';
import { blobKeyOf, fetchAndHash, lazyBytes, listKeys, MiB, rowCount, sha256, upload, uploadVolume } from './helpers/uploads.js';

/**
 * What must hold when things go wrong around file entries (local blob store): a failure between
 * the object write and the row commit leaves nothing behind and keeps the previous version, signed
 * URLs cannot be stretched or redirected, and reconciliation finds what drifted.
 */
const SECRET = 'test-download-signing-secret-0123456789';
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ DOWNLOAD_SIGNING_SECRET: SECRET, SWEEP_INTERVAL_MS: '3600000' });
});
afterAll(async () => {
  gw.app.runtime.hooks.beforeEntryCommit = undefined;
  await gw?.stop();
});

function expectMasked500(res: { status: number; body: any }) {
  expect(res.status, JSON.stringify(res.body)).toBe(500);
  expect(res.body).toEqual({
    error: 'INTERNAL_SERVER_ERROR',
    message: expect.any(String),
    details: expect.anything(),
    timestamp: expect.any(String),
    status_code: 500,
  });
  expect(JSON.stringify(res.body)).not.toContain('injected');
}

describe('a fault between the object write and the row commit', () => {
  afterEach(() => {
    gw.app.runtime.hooks.beforeEntryCommit = undefined;
  });

  /** Fails the commit of `path` only; other writes go through. */
  const failCommitOf = (path: string) => {
    const seen: string[] = [];
    gw.app.runtime.hooks.beforeEntryCommit = (p) => {
      seen.push(p);
      if (p === path) throw new Error('injected fault before commit');
    };
    return seen;
  };

  it('a new entry: 500 (masked), and neither a row nor an object remains', async () => {
    const v = await uploadVolume(gw, 'acme');
    const seen = failCommitOf('/new.bin');
    const file = lazyBytes(6 * MiB);
    const res = await upload(gw, v.upload('/new.bin'), { data: file.iterable(), size: file.size, filename: 'new.bin' });
    expectMasked500(res);
    expect(seen).toEqual(['/new.bin']); // the fault really ran, after the object was complete
    expect(await rowCount(gw, v.volumeId)).toBe(0);
    expect(await listKeys(gw, v.bucket)).toEqual([]);
    expect((await gw.call('GET', v.entry('/new.bin'))).status).toBe(404);
    await expectExactUsage(gw, v);

    // Once the fault is gone the same upload succeeds.
    gw.app.runtime.hooks.beforeEntryCommit = undefined;
    const again = await upload(gw, v.upload('/new.bin'), { data: Buffer.from('fine now'), filename: 'new.bin' });
    expect(again.status, JSON.stringify(again.body)).toBe(201);
    expect(await listKeys(gw, v.bucket)).toHaveLength(1);
  });

  it('a replacement: 500, the previous version is intact and still downloadable, the new object is gone', async () => {
    const v = await uploadVolume(gw, 'acme');
    const first = Buffer.from('the first version, which must survive');
    const created = await upload(gw, v.upload('/keep.txt'), { data: first, filename: 'keep.txt' }, { tags: 'v1' });
    expect(created.status).toBe(201);
    const oldKey = await blobKeyOf(gw, v.volumeId, '/keep.txt');

    failCommitOf('/keep.txt');
    const res = await upload(gw, v.upload('/keep.txt'), { data: Buffer.alloc(2 * MiB, 9), filename: 'keep.txt' }, { tags: 'v2' });
    expectMasked500(res);
    gw.app.runtime.hooks.beforeEntryCommit = undefined;

    const now = await gw.call('GET', v.entry('/keep.txt'));
    expect(now.status).toBe(200);
    expect(now.body).toMatchObject({ version: 1, sha256: sha256(first), size_bytes: first.length, tags: ['v1'] });
    expect(await blobKeyOf(gw, v.volumeId, '/keep.txt')).toBe(oldKey);
    expect(await listKeys(gw, v.bucket)).toEqual([oldKey]);
    const dl = await gw.call('GET', v.download('/keep.txt'));
    expect(dl.status).toBe(200);
    expect(await fetchAndHash(dl.body.download_url)).toMatchObject({ status: 200, sha256: sha256(first) });
    await expectExactUsage(gw, v);
  });

  it('through GraphQL too: the error is masked and nothing is left', async () => {
    const v = await uploadVolume(gw, 'acme');
    failCommitOf('/gql.bin');
    const form = new FormData();
    form.append(
      'operations',
      JSON.stringify({
        query: 'mutation($v: ID!, $f: File!) { uploadEntry(volumeId: $v, path: "/gql.bin", file: $f) { created } }',
        variables: { v: v.volumeId, f: null },
      }),
    );
    form.append('map', JSON.stringify({ 0: ['variables.f'] }));
    form.append('0', new Blob([Buffer.from('graphql bytes')]), 'gql.bin');
    const res = await fetch(`${gw.url}/graphql`, { method: 'POST', body: form, headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    const body = await res.json();
    expect(body.errors?.[0], JSON.stringify(body)).toMatchObject({
      message: 'Unexpected error.',
      extensions: { code: 'INTERNAL_SERVER_ERROR' },
    });
    expect(JSON.stringify(body)).not.toContain('injected');
    expect(await rowCount(gw, v.volumeId)).toBe(0);
    expect(await listKeys(gw, v.bucket)).toEqual([]);
  });
});

describe('local signed download URLs over HTTP', () => {
  const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
  let url: URL;
  let v: Awaited<ReturnType<typeof uploadVolume>>;
  beforeAll(async () => {
    v = await uploadVolume(gw, 'acme');
    expect((await upload(gw, v.upload('/files/data.bin'), { data, filename: 'data.bin' })).status).toBe(201);
    expect((await upload(gw, v.upload('/files/other.bin'), { data: Buffer.from('other'), filename: 'other.bin' })).status).toBe(201);
    url = new URL((await gw.call('GET', v.download('/files/data.bin'))).body.download_url);
  });

  const expect403 = async (target: string | URL) => {
    const res = await fetch(target);
    expect(res.status, String(target)).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'FORBIDDEN', status_code: 403 });
  };
  const withParam = (name: string, value: string) => {
    const u = new URL(url);
    u.searchParams.set(name, value);
    return u;
  };

  it('the URL as issued works (control)', async () => {
    expect(url.pathname.startsWith(`/blobs/${v.bucket}/`)).toBe(true);
    expect(await fetchAndHash(url.href)).toMatchObject({ status: 200, sha256: sha256(data), size: data.length });
  });

  it('an expired URL, correctly signed, is refused', async () => {
    const key = (await blobKeyOf(gw, v.volumeId, '/files/data.bin')) as string;
    const expires = Math.floor(Date.now() / 1000) - 1;
    const fields = { bucket: v.bucket, key, expires, filename: 'data.bin', contentType: 'application/octet-stream' };
    const expired = new URL(url);
    expired.search = new URLSearchParams({
      expires: String(expires),
      filename: 'data.bin',
      type: 'application/octet-stream',
      sig: signLocalDownload(SECRET, fields),
    }).toString();
    // The same construction with a future expiry is accepted, so the refusal is the expiry's.
    const fresh = new URL(expired);
    const later = expires + 120;
    fresh.searchParams.set('expires', String(later));
    fresh.searchParams.set('sig', signLocalDownload(SECRET, { ...fields, expires: later }));
    expect((await fetch(fresh)).status).toBe(200);
    await expect403(expired);
  });

  it('a tampered key, expiry, signature, file name or type is refused', async () => {
    const otherKey = (await blobKeyOf(gw, v.volumeId, '/files/other.bin')) as string;
    const otherObject = new URL(url);
    otherObject.pathname = `/blobs/${v.bucket}/${otherKey}`;
    await expect403(otherObject);
    const otherBucket = new URL(url);
    // Change the bucket's last character (to something it is not).
    otherBucket.pathname = url.pathname.replace(v.bucket, `${v.bucket.slice(0, -1)}${v.bucket.endsWith('0') ? '1' : '0'}`);
    await expect403(otherBucket);
    await expect403(withParam('expires', String(Number(url.searchParams.get('expires')) + 1)));
    const sig = url.searchParams.get('sig') as string;
    await expect403(withParam('sig', `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`));
    await expect403(withParam('sig', ''));
    await expect403(withParam('filename', 'evil.html'));
    await expect403(withParam('type', 'text/html'));
    const noSig = new URL(url);
    noSig.searchParams.delete('sig');
    await expect403(noSig);
  });

  it('a Range request gets 206 with exactly those bytes', async () => {
    const res = await fetch(url, { headers: { range: 'bytes=100-199' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 100-199/${data.length}`);
    expect(res.headers.get('content-length')).toBe('100');
    expect(Buffer.from(await res.arrayBuffer())).toEqual(data.subarray(100, 200));

    const suffix = await fetch(url, { headers: { range: 'bytes=-10' } });
    expect(suffix.status).toBe(206);
    expect(Buffer.from(await suffix.arrayBuffer())).toEqual(data.subarray(data.length - 10));
    const open = await fetch(url, { headers: { range: 'bytes=990-' } });
    expect(open.status).toBe(206);
    expect(Buffer.from(await open.arrayBuffer())).toEqual(data.subarray(990));

    const beyond = await fetch(url, { headers: { range: `bytes=${data.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${data.length}`);
    await beyond.arrayBuffer();
  });
});

describe('reconciliation of a bucket with its rows', () => {
  it('removes orphans once past the grace period and reports missing objects; REST needs admin', async () => {
    const v = await uploadVolume(gw, 'acme');
    for (const p of ['/a.txt', '/b.txt']) {
      expect((await upload(gw, v.upload(p), { data: Buffer.from(`bytes of ${p}`), filename: 'f.txt' })).status).toBe(201);
    }
    const keyA = (await blobKeyOf(gw, v.volumeId, '/a.txt')) as string;
    const keyB = (await blobKeyOf(gw, v.volumeId, '/b.txt')) as string;
    const entryB = (await gw.call('GET', v.entry('/b.txt'))).body;
    // An object no row points to, and a row whose object vanished behind the gateway's back.
    const orphan = `volumes/${v.volumeId}/objects/orphan-${Date.now()}`;
    await gw.app.blobStore.put(v.bucket, orphan, Readable.from([Buffer.from('nobody owns me')]));
    await gw.app.blobStore.delete(v.bucket, keyB);
    const missing = [{ entryId: entryB.entry_id, path: '/b.txt', blobKey: keyB }];

    // Default grace: the fresh orphan may belong to an upload about to commit, so it stays.
    expect(ORPHAN_GRACE_MS).toBeGreaterThan(60_000);
    const cautious = await reconcileWorkspace(gw.app.runtime, v.workspaceId);
    expect(cautious.objects).toEqual({
      workspaceId: v.workspaceId,
      orphansRemoved: [],
      orphansKept: 1,
      missingObjects: missing,
      incompleteUploadsRemoved: 0,
      incompleteUploadBytes: 0,
      uploadSessions: { expiredRemoved: 0, strayRemoved: 0, unfinished: 0, reservedBytes: 0 },
    });
    expect(await gw.app.blobStore.head(v.bucket, orphan)).not.toBeNull();

    // The REST route: an org key without admin is refused, admin keys get the same report.
    const writer = await createKey(gw, 'acme', ['workspaces:read', 'workspaces:write', 'volumes:write', 'entries:write']);
    const refused = await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/reconcile`, undefined, writer);
    expect(refused.status, JSON.stringify(refused.body)).toBe(403);
    expect(refused.body).toMatchObject({ error: 'FORBIDDEN', details: { required_permission: 'admin' } });
    const orgAdmin = await createKey(gw, 'acme', ['admin']);
    for (const key of [orgAdmin, undefined]) {
      const res = await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/reconcile`, undefined, key);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body).toMatchObject({
        orphans_removed: [],
        orphans_kept: 1,
        missing_objects: [{ entry_id: entryB.entry_id, path: '/b.txt', blob_key: keyB }],
      });
      expect(res.body.volumes).toEqual([expect.objectContaining({ volume_id: v.volumeId })]);
    }
    // Another org's admin key does not even see the workspace.
    const stranger = await createKey(gw, 'other-org', ['admin']);
    expect((await gw.call('POST', `/v1/orgs/other-org/workspaces/${v.workspaceId}/reconcile`, undefined, stranger)).status).toBe(404);
    expect(await gw.app.blobStore.head(v.bucket, orphan)).not.toBeNull();

    // Grace 0: the orphan goes; the missing object is reported, and its row is left for an operator.
    const thorough = await reconcileWorkspace(gw.app.runtime, v.workspaceId, 0);
    expect(thorough.objects).toEqual({
      workspaceId: v.workspaceId,
      orphansRemoved: [orphan],
      orphansKept: 0,
      missingObjects: missing,
      incompleteUploadsRemoved: 0,
      incompleteUploadBytes: 0,
      uploadSessions: { expiredRemoved: 0, strayRemoved: 0, unfinished: 0, reservedBytes: 0 },
    });
    expect(await gw.app.blobStore.head(v.bucket, orphan)).toBeNull();
    expect(await listKeys(gw, v.bucket)).toEqual([keyA]);
    expect(await blobKeyOf(gw, v.volumeId, '/b.txt')).toBe(keyB);
    expect(await fetchAndHash((await gw.call('GET', v.download('/a.txt'))).body.download_url)).toMatchObject({
      status: 200,
      sha256: sha256('bytes of /a.txt'),
    });
  });
});
