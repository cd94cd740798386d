import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { call } from './helpers/http.js';
import { S3RVER_CREDENTIALS, startS3rver } from './helpers/s3rver.js';
import { randomData, tusUpload } from './helpers/tus.js';
import { fetchAndHash, listKeys, MiB, sha256, type UploadVolume, uploadVolume } from './helpers/uploads.js';

/**
 * Resumable uploads (tus 1.0, driven by tus-js-client as apps drive it) and signed upload URLs, over
 * real HTTP on both blob stores: the local store and S3 (s3rver in a child process).
 */
interface Backend {
  env: Record<string, string>;
  stop(): Promise<void>;
}
const stores: { name: 'local' | 's3'; start(): Promise<Backend> }[] = [
  { name: 'local', start: async () => ({ env: {}, stop: async () => {} }) },
  {
    name: 's3',
    start: async () => {
      const s3 = await startS3rver();
      return {
        env: {
          S3_ENDPOINT: s3.endpoint,
          S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
          S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
        },
        stop: s3.stop,
      };
    },
  },
];

describe.each(stores)('resumable and direct uploads on the $name blob store', (store) => {
  let backend: Backend;
  let gw: TestGateway;
  beforeAll(async () => {
    backend = await store.start();
    gw = await startGateway({ ...backend.env, SWEEP_INTERVAL_MS: '200' });
  });
  afterAll(async () => {
    await gw?.stop();
    await backend?.stop();
  });

  const endpoint = (v: UploadVolume) => `${gw.url}${v.volumeUrl}/uploads`;
  const db = () => gw.app.database.prisma;
  /** Moves a session's expiry into the past (as 24 h passing would): the maintenance sweep (every 200 ms here) ends it. */
  const expireNow = (id: string) => db().uploadSession.update({ where: { id }, data: { expiresAt: new Date(Date.now() - 1000) } });
  const reserved = async (v: UploadVolume) =>
    (await db().volume.findUniqueOrThrow({ where: { id: v.volumeId }, select: { reservedBytes: true } })).reservedBytes;

  /** What the bucket holds besides entries' objects: tus bookkeeping (S3) or the .uploads folder (local). */
  async function leftovers(v: UploadVolume): Promise<string[]> {
    const entryKeys = new Set(
      (await db().entry.findMany({ where: { volumeId: v.volumeId }, select: { blobKey: true } })).map((e) => e.blobKey),
    );
    const keys = (await listKeys(gw, v.bucket)).filter((k) => !entryKeys.has(k));
    if (store.name === 'local') {
      const dir = path.join(gw.dataDir, 'blobs', v.bucket, '.uploads');
      keys.push(...(await fs.readdir(dir).catch(() => [])).map((f) => `.uploads/${f}`));
    }
    return keys;
  }

  it('resumes a 200 MB upload cut three times mid-PATCH and ends sha256-identical', async () => {
    const v = await uploadVolume(gw, 'acme');
    const data = randomData(200 * MiB);
    const result = await tusUpload(endpoint(v), data, {
      metadata: { path: '/big/model.bin', filename: 'model.bin', filetype: 'application/octet-stream', tags: 'big,model' },
      cutAt: [40 * MiB, 95 * MiB, 150 * MiB],
    });
    expect(result.error, JSON.stringify(result.body)).toBeNull();
    expect(result.cuts).toBe(3);
    const entry = await gw.call('GET', v.entry('/big/model.bin'));
    expect(entry.status).toBe(200);
    expect(entry.body).toMatchObject({ size_bytes: 200 * MiB, sha256: sha256(data), version: 1, tags: ['big', 'model'] });
    const dl = await gw.call('GET', `${v.download('/big/model.bin')}?expires_in=600`);
    expect(await fetchAndHash(dl.body.download_url)).toMatchObject({ status: 200, size: 200 * MiB, sha256: sha256(data) });
    // The session is completed, its reservation released, its bookkeeping gone; usage counts the file.
    const session = await db().uploadSession.findFirstOrThrow({ where: { volumeId: v.volumeId } });
    expect(session).toMatchObject({ status: 'completed', reservedBytes: 0n, entryId: entry.body.entry_id, entryVersion: 1 });
    expect(await reserved(v)).toBe(0n);
    expect(await leftovers(v)).toEqual([]);
    expect((await gw.call('GET', v.volumeUrl)).body.used_bytes).toBe(200 * MiB);
    // The upload URL still answers its offset (a client whose last answer was lost sees it is done).
    const head = await fetch(result.url as string, {
      method: 'HEAD',
      headers: { 'X-API-Key': 'test-admin-key-0123456789abcdef', 'Tus-Resumable': '1.0.0' },
    });
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe(String(200 * MiB));
  });

  it('resolves concurrent uploads to one path by version, exactly as one-shot uploads', async () => {
    const v = await uploadVolume(gw, 'acme');
    const a = randomData(6 * MiB + 1);
    const b = randomData(6 * MiB + 2);
    // No precondition: both land, one after the other.
    const [ra, rb] = await Promise.all([
      tusUpload(endpoint(v), a, { metadata: { path: '/shared.bin' } }),
      tusUpload(endpoint(v), b, { metadata: { path: '/shared.bin' } }),
    ]);
    expect([ra.error, rb.error]).toEqual([null, null]);
    const after = await gw.call('GET', v.entry('/shared.bin'));
    expect(after.body.version).toBe(2);
    expect([sha256(a), sha256(b)]).toContain(after.body.sha256);

    // Both over version 2: one wins (version 3), the other's last PATCH answers 409 and leaves nothing.
    const c = randomData(6 * MiB + 3);
    const d = randomData(6 * MiB + 4);
    const [rc, rd] = await Promise.all([
      tusUpload(endpoint(v), c, { metadata: { path: '/shared.bin', expected_version: '2' } }),
      tusUpload(endpoint(v), d, { metadata: { path: '/shared.bin', expected_version: '2' } }),
    ]);
    const failed = [rc, rd].filter((r) => r.error);
    expect(failed).toHaveLength(1);
    expect(failed[0]?.status).toBe(409);
    expect(failed[0]?.body).toMatchObject({ error: 'CONFLICT', details: { current_version: 3, expected_version: 2 } });
    const final = await gw.call('GET', v.entry('/shared.bin'));
    expect(final.body.version).toBe(3);
    expect(await reserved(v)).toBe(0n);
    expect(await leftovers(v)).toEqual([]);
    expect((await gw.call('GET', v.volumeUrl)).body.used_bytes).toBe(final.body.size_bytes);
    // A precondition that already fails is refused at creation, naming the header it came from.
    const early = await tusUpload(endpoint(v), c, { metadata: { path: '/shared.bin', expected_version: '1' } });
    expect(early.status).toBe(409);
  });

  it('answers 507 when the quota runs out mid-upload and frees the reservation', async () => {
    const v = await uploadVolume(gw, 'acme', { max_size_bytes: 10 * MiB });
    // A declared size the volume cannot hold is refused at creation.
    const tooBig = await tusUpload(endpoint(v), randomData(11 * MiB), { metadata: { path: '/big.bin' } });
    expect(tooBig.status).toBe(507);
    expect(tooBig.body).toMatchObject({ error: 'QUOTA_EXCEEDED', details: { quota: 'max_size_bytes' } });
    // A deferred length grows its reservation PATCH by PATCH until the volume is full.
    const data = randomData(16 * MiB);
    const r = await tusUpload(endpoint(v), data, { metadata: { path: '/deferred.bin' }, uploadLengthDeferred: true, chunkSize: 5 * MiB });
    expect(r.status).toBe(507);
    expect(r.body).toMatchObject({ error: 'QUOTA_EXCEEDED', details: { quota: 'max_size_bytes' } });
    const session = await db().uploadSession.findFirstOrThrow({ where: { volumeId: v.volumeId, path: '/deferred.bin' } });
    expect(session).toMatchObject({ status: 'failed', reservedBytes: 0n });
    expect(await reserved(v)).toBe(0n);
    expect(await leftovers(v)).toEqual([]);
    expect((await gw.call('GET', v.entry('/deferred.bin'))).status).toBe(404);
    // The room is free again: an upload that fits goes through.
    const fits = randomData(9 * MiB);
    expect((await tusUpload(endpoint(v), fits, { metadata: { path: '/fits.bin' } })).error).toBeNull();
    // While an upload holds its reservation, one-shot writes cannot take that room.
    const held = await fetch(endpoint(v), {
      method: 'POST',
      headers: {
        'X-API-Key': 'test-admin-key-0123456789abcdef',
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(MiB - 100),
        'Upload-Metadata': `path ${Buffer.from('/held.bin').toString('base64')}`,
      },
    });
    expect(held.status).toBe(201);
    const put = await gw.call('PUT', v.entry('/small.json'), { content: 'x'.repeat(300) });
    expect(put.status).toBe(507);
    expect(
      (
        await fetch(new URL(held.headers.get('location') as string, gw.url), {
          method: 'DELETE',
          headers: { 'X-API-Key': 'test-admin-key-0123456789abcdef', 'Tus-Resumable': '1.0.0' },
        })
      ).status,
    ).toBe(204);
    expect((await gw.call('PUT', v.entry('/small.json'), { content: 'x'.repeat(300) })).status).toBe(201);
  });

  it('holds a file against max_file_count while an upload to a new path is unfinished', async () => {
    const v = await uploadVolume(gw, 'acme', { max_file_count: 3 });
    const headers = { 'X-API-Key': 'test-admin-key-0123456789abcdef', 'Tus-Resumable': '1.0.0' };
    const begin = (path: string, length: number) =>
      fetch(endpoint(v), {
        method: 'POST',
        headers: { ...headers, 'Upload-Length': String(length), 'Upload-Metadata': `path ${Buffer.from(path).toString('base64')}` },
      });
    const files = async () =>
      db().volume.findUniqueOrThrow({ where: { id: v.volumeId }, select: { entryCount: true, reservedFiles: true } });
    expect((await gw.call('PUT', v.entry('/one.json'), { content: 1 })).status).toBe(201);
    const a = await begin('/a.bin', 10);
    const b = await begin('/b.bin', 10);
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(await files()).toEqual({ entryCount: 1, reservedFiles: 2 });
    // The volume is full while they are open: a third upload and a one-shot write of a new path are
    // refused at once (before, both were accepted, and an upload learnt it at its last byte).
    const third = await begin('/c.bin', 10);
    expect(third.status).toBe(507);
    expect(await third.json()).toMatchObject({ error: 'QUOTA_EXCEEDED', details: { quota: 'max_file_count', limit: 3, used: 3 } });
    expect((await gw.call('PUT', v.entry('/two.json'), { content: 2 })).status).toBe(507);
    // Replacing an entry adds no file: neither a write nor an upload of an existing path holds one.
    expect((await gw.call('PUT', v.entry('/one.json'), { content: 'again' })).status).toBe(200);
    const over = await begin('/one.json', 10);
    expect(over.status).toBe(201);
    expect(await files()).toEqual({ entryCount: 1, reservedFiles: 2 });
    // An upload commits into the file it held; one ended gives its file back.
    const done = await fetch(new URL(a.headers.get('location') as string, gw.url), {
      method: 'PATCH',
      headers: { ...headers, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: new Uint8Array(randomData(10)),
    });
    expect(done.status, await done.clone().text()).toBe(204);
    expect(await files()).toEqual({ entryCount: 2, reservedFiles: 1 });
    for (const res of [b, over]) {
      const del = await fetch(new URL(res.headers.get('location') as string, gw.url), { method: 'DELETE', headers });
      expect(del.status).toBe(204);
    }
    expect(await files()).toEqual({ entryCount: 2, reservedFiles: 0 });
    expect((await gw.call('PUT', v.entry('/two.json'), { content: 2 })).status).toBe(201);
    // Reconcile counts the same.
    expect((await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/reconcile`)).status).toBe(200);
    expect(await files()).toEqual({ entryCount: 3, reservedFiles: 0 });
  });

  it('lets an app key create and resume uploads only inside its write mount', async () => {
    const v = await uploadVolume(gw, 'acme');
    await gw.call('POST', `${v.volumeUrl}/mounts`, { app_id: 'writer', path_pattern: '/notes/**', access_level: 'write' });
    await gw.call('POST', `${v.volumeUrl}/mounts`, { app_id: 'reader', path_pattern: '/**', access_level: 'read' });
    const writer = await createKey(gw, 'acme', ['volumes:read', 'entries:read', 'entries:write'], 'writer');
    const reader = await createKey(gw, 'acme', ['volumes:read', 'entries:read', 'entries:write'], 'reader');
    const data = randomData(MiB);

    const inside = await tusUpload(endpoint(v), data, { key: writer, metadata: { path: '/notes/a.bin' } });
    expect(inside.error).toBeNull();
    expect((await gw.call('GET', v.entry('/notes/a.bin'))).body.written_by_app_id).toBe('writer');

    const outside = await tusUpload(endpoint(v), data, { key: writer, metadata: { path: '/secret/a.bin' } });
    expect(outside.status).toBe(404);
    const readOnly = await tusUpload(endpoint(v), data, { key: reader, metadata: { path: '/notes/b.bin' } });
    expect(readOnly.status).toBe(403);

    // An upload the admin opened outside the mount: the app key can neither see, resume nor end it.
    const created = await fetch(endpoint(v), {
      method: 'POST',
      headers: {
        'X-API-Key': 'test-admin-key-0123456789abcdef',
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(data.length),
        'Upload-Metadata': `path ${Buffer.from('/secret/b.bin').toString('base64')}`,
      },
    });
    expect(created.status).toBe(201);
    const url = new URL(created.headers.get('location') as string, gw.url).toString();
    // tus-js-client's HEAD gets 404, so it tries to create a new upload, which has no path: refused too.
    const resumed = await tusUpload(endpoint(v), data, { key: writer, uploadUrl: url });
    expect(resumed.error).not.toBeNull();
    for (const method of ['HEAD', 'DELETE']) {
      expect((await fetch(url, { method, headers: { 'X-API-Key': writer, 'Tus-Resumable': '1.0.0' } })).status).toBe(404);
    }
    const patched = await fetch(url, {
      method: 'PATCH',
      headers: { 'X-API-Key': writer, 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: new Uint8Array(data),
    });
    expect(patched.status).toBe(404);
    expect((await db().uploadSession.findFirstOrThrow({ where: { volumeId: v.volumeId, path: '/secret/b.bin' } })).bytesReceived).toBe(0n);
  });

  it('commits under locks and fencing as a one-shot upload does, and indexes text', async () => {
    const v = await uploadVolume(gw, 'acme');
    const lock = await gw.call('POST', `${v.volumeUrl}/locks`, { partition: '/locked/', app_id: 'holder', ttl_seconds: 300 });
    expect(lock.status, JSON.stringify(lock.body)).toBe(201);
    const text = Buffer.from('Resumable uploads land through the same commit.\n'.repeat(2000));
    // Without the lock id, the last PATCH is refused (LOCKED) and nothing is left.
    const refused = await tusUpload(endpoint(v), text, { metadata: { path: '/locked/notes.md', filetype: 'text/markdown' } });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error: 'LOCKED' });
    expect((await gw.call('GET', v.entry('/locked/notes.md'))).status).toBe(404);
    expect(await leftovers(v)).toEqual([]);
    // With it (X-Lock-Id on the creation request), it lands, and its text is indexed.
    const held = await tusUpload(endpoint(v), text, {
      metadata: { path: '/locked/notes.md', filetype: 'text/markdown' },
      headers: { 'X-Lock-Id': lock.body.lock.lock_id },
    });
    expect(held.error).toBeNull();
    const indexed = await waitFor(async () => {
      const e = await gw.call('GET', v.entry('/locked/notes.md'));
      return e.body.is_indexed && e.body;
    }, 30_000);
    expect(indexed).toMatchObject({ mime_type: 'text/markdown', size_bytes: text.length, sha256: sha256(text) });
    expect(indexed.total_chunks).toBeGreaterThan(0);
    expect(indexed.content_text.length).toBeGreaterThan(0);
    // A stale fencing token is refused at the commit too.
    const stale = await tusUpload(endpoint(v), text, {
      metadata: { path: '/other.md' },
      headers: { 'X-Fencing-Token': '0', 'X-Lock-Partition': '/locked/' },
    });
    expect(stale.status).toBe(409);
    expect(stale.body.details).toMatchObject({ reason: 'stale_fencing_token' });
  });

  it('commits an empty file at creation (tus clients send no PATCH for it)', async () => {
    const v = await uploadVolume(gw, 'acme');
    const r = await tusUpload(endpoint(v), Buffer.alloc(0), { metadata: { path: '/empty.txt' } });
    expect(r.error).toBeNull();
    expect((await gw.call('GET', v.entry('/empty.txt'))).body).toMatchObject({ size_bytes: 0, sha256: sha256(''), version: 1 });
    expect(await leftovers(v)).toEqual([]);
  });

  it('refuses bad tus input with 4xx naming the field, and writes nothing', async () => {
    const v = await uploadVolume(gw, 'acme');
    const post = (headers: Record<string, string>) =>
      call(gw.url, 'POST', `${v.volumeUrl}/uploads`, undefined, { headers: { 'Tus-Resumable': '1.0.0', ...headers } });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const noPath = await post({ 'Upload-Length': '10', 'Upload-Metadata': `filename ${b64('a.txt')}` });
    expect(noPath.status).toBe(422);
    expect(noPath.body.detail[0].loc).toEqual(['header', 'upload-metadata', 'path']);
    const badPath = await post({ 'Upload-Length': '10', 'Upload-Metadata': `path ${b64('/a/../b')}` });
    expect(badPath.status).toBe(422);
    expect(badPath.body.detail[0].loc).toEqual(['header', 'upload-metadata', 'path']);
    const badMeta = await post({ 'Upload-Length': '10', 'Upload-Metadata': `path ${b64('/a')},metadata ${b64('{nope')}` });
    expect(badMeta.body.detail[0].loc).toEqual(['header', 'upload-metadata', 'metadata']);
    const badTtl = await post({ 'Upload-Length': '10', 'Upload-Metadata': `path ${b64('/a')},ttl_seconds ${b64('-4')}` });
    expect(badTtl.body.detail[0].loc).toEqual(['header', 'upload-metadata', 'ttl_seconds']);
    const badType = await post({ 'Upload-Length': '10', 'Upload-Metadata': `path ${b64('/a')},filetype ${b64('not a type')}` });
    expect(badType.body.detail[0].loc).toEqual(['header', 'upload-metadata', 'filetype']);
    const noLength = await post({ 'Upload-Metadata': `path ${b64('/a')}` });
    expect(noLength.status).toBe(422);
    expect(noLength.body.detail[0].loc).toEqual(['header', 'upload-length']);
    // The write headers are read as for any entry write (src/rest/write-headers.ts).
    const ok = { 'Upload-Length': '10', 'Upload-Metadata': `path ${b64('/a')}` };
    const badNone = await post({ ...ok, 'If-None-Match': '"3"' });
    expect(badNone.status).toBe(422);
    expect(badNone.body.detail[0].loc).toEqual(['header', 'if-none-match']);
    const badExecution = await post({ ...ok, 'X-Execution-Id': 'x'.repeat(300) });
    expect(badExecution.status).toBe(422);
    expect(badExecution.body.detail[0].loc).toEqual(['header', 'x-execution-id']);
    const loneToken = await post({ ...ok, 'X-Fencing-Token': '4' });
    expect(loneToken.body.detail[0].loc).toEqual(['header', 'x-lock-partition']);
    const noTus = await call(gw.url, 'POST', `${v.volumeUrl}/uploads`, undefined, { headers: { 'Upload-Length': '1' } });
    expect(noTus.status).toBe(412);
    expect(await db().uploadSession.count({ where: { volumeId: v.volumeId } })).toBe(0);
    expect(await reserved(v)).toBe(0n);
  });

  it('sweeps expired uploads with their parts and frees their reservations', async () => {
    const v = await uploadVolume(gw, 'acme');
    const data = randomData(12 * MiB);
    // Send part of it, never finish, and let it expire.
    const created = await fetch(endpoint(v), {
      method: 'POST',
      headers: {
        'X-API-Key': 'test-admin-key-0123456789abcdef',
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(data.length),
        'Upload-Metadata': `path ${Buffer.from('/expiring.bin').toString('base64')}`,
      },
    });
    expect(created.status).toBe(201);
    expect(created.headers.get('upload-expires')).toBeTruthy();
    const url = new URL(created.headers.get('location') as string, gw.url).toString();
    const patched = await fetch(url, {
      method: 'PATCH',
      headers: {
        'X-API-Key': 'test-admin-key-0123456789abcdef',
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': '0',
        'Content-Type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(data.subarray(0, 11 * MiB)),
    });
    expect(patched.status).toBe(204);
    expect(await reserved(v)).toBe(12n * BigInt(MiB));
    expect((await leftovers(v)).length).toBeGreaterThan(0);
    const id = url.split('/').pop() as string;
    await expireNow(id);
    await waitFor(async () => (await db().uploadSession.findUnique({ where: { id } }))?.status === 'expired', 15_000);
    expect(await reserved(v)).toBe(0n);
    // The parts go right after the session ends (the sweep's next step).
    await waitFor(async () => (await leftovers(v)).length === 0, 15_000);
    const head = await fetch(url, {
      method: 'HEAD',
      headers: { 'X-API-Key': 'test-admin-key-0123456789abcdef', 'Tus-Resumable': '1.0.0' },
    });
    expect(head.status).toBe(410);
    // Reconcile reports unfinished sessions (none left here) and leaves live ones' parts alone.
    const rec = await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/reconcile`);
    expect(rec.status).toBe(200);
    expect(rec.body.upload_sessions).toMatchObject({ unfinished: 0, reserved_bytes: 0 });

    // An unfinished upload of a volume deleted for good: its session goes with the volume, and
    // reconciliation removes what the store still held of it.
    const w = await uploadVolume(gw, 'acme');
    const part = await fetch(endpoint(w), {
      method: 'POST',
      headers: {
        'X-API-Key': 'test-admin-key-0123456789abcdef',
        'Tus-Resumable': '1.0.0',
        'Upload-Length': String(MiB),
        'Upload-Metadata': `path ${Buffer.from('/unfinished.bin').toString('base64')}`,
      },
    });
    expect(part.status).toBe(201);
    expect((await gw.call('DELETE', `${w.volumeUrl}?permanent=true`)).status).toBe(200);
    if (store.name === 'local') expect((await leftovers(w)).length).toBeGreaterThan(0);
    const { reconcileWorkspace } = await import('../src/domain/maintenance/maintenance.js');
    await reconcileWorkspace(gw.app.runtime, w.workspaceId, 0);
    expect(await leftovers(w)).toEqual([]);
  });

  it.runIf(store.name === 's3')('signs URLs for S3_PUBLIC_ENDPOINT when it is set', async () => {
    const { S3BlobStore } = await import('../src/storage/s3.js');
    const s3 = new S3BlobStore({
      endpoint: backend.env.S3_ENDPOINT as string,
      publicEndpoint: 'https://s3.example.com',
      region: 'us-east-1',
      accessKeyId: S3RVER_CREDENTIALS.accessKeyId,
      secretAccessKey: S3RVER_CREDENTIALS.secretAccessKey,
      forcePathStyle: true,
    });
    const put = await s3.signedPutUrl('vg-bucket', 'volumes/v/objects/o', { expiresIn: 60, size: 5, contentType: 'text/plain' });
    expect(new URL(put.url).host).toBe('s3.example.com');
    expect(put.url).toContain('X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost');
    expect(new URL(await s3.signedUrl('vg-bucket', 'k', { expiresIn: 60 })).host).toBe('s3.example.com');
    s3.client.destroy();
  });

  it('takes a file through a signed upload URL and a checked completion', async () => {
    const v = await uploadVolume(gw, 'acme');
    const data = randomData(3 * MiB + 5);
    const created = await gw.call('POST', `${v.entry('/direct/file.csv')}/upload-url`, {
      size_bytes: data.length,
      mime_type: 'text/csv',
      sha256: sha256(data),
      tags: ['direct'],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ method: 'PUT', upload: { status: 'uploading', reserved_bytes: data.length } });
    if (store.name === 's3') expect(created.body.upload_url).not.toContain(gw.url);
    // Nothing visible before completion; completing before the PUT is refused and changes nothing.
    expect((await gw.call('GET', v.entry('/direct/file.csv'))).status).toBe(404);
    const early = await gw.call('POST', created.body.complete_url);
    expect(early.status).toBe(409);
    expect(early.body.details).toMatchObject({ reason: 'object_missing', field: 'upload_url' });
    const put = await fetch(created.body.upload_url, { method: 'PUT', headers: created.body.headers, body: new Uint8Array(data) });
    expect(put.status).toBe(200);
    expect((await gw.call('GET', v.entry('/direct/file.csv'))).status).toBe(404);
    const done = await gw.call('POST', created.body.complete_url);
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body.entry).toMatchObject({
      path: '/direct/file.csv',
      size_bytes: data.length,
      sha256: sha256(data),
      mime_type: 'text/csv',
      tags: ['direct'],
    });
    expect(done.body.upload).toMatchObject({ status: 'completed', reserved_bytes: 0 });
    expect((await gw.call('POST', created.body.complete_url)).body.entry.version).toBe(1); // idempotent
    expect(await reserved(v)).toBe(0n);

    // In parts: S3 answers a presigned multipart set; completion assembles them (the local store answers one part).
    const big = randomData(12 * MiB + 7);
    const multi = await gw.call('POST', `${v.entry('/direct/parts.bin')}/upload-url`, {
      size_bytes: big.length,
      sha256: sha256(big),
      part_size_bytes: 5 * MiB,
    });
    expect(multi.status, JSON.stringify(multi.body)).toBe(201);
    const parts: { part_number: number; size_bytes: number; url: string; headers: Record<string, string> }[] = multi.body.parts;
    expect(parts.map((p) => p.size_bytes)).toEqual(store.name === 's3' ? [5 * MiB, 5 * MiB, 2 * MiB + 7] : [big.length]);
    const etags: { part_number: number; etag: string }[] = [];
    let offset = 0;
    for (const part of parts) {
      const res = await fetch(part.url, {
        method: 'PUT',
        headers: part.headers,
        body: new Uint8Array(big.subarray(offset, offset + part.size_bytes)),
      });
      expect(res.status).toBe(200);
      etags.push({ part_number: part.part_number, etag: res.headers.get('etag') ?? '' });
      offset += part.size_bytes;
    }
    if (store.name === 's3') {
      const noParts = await gw.call('POST', multi.body.complete_url);
      expect(noParts.status).toBe(422);
      expect(noParts.body.detail[0].loc).toEqual(['body', 'parts']);
    }
    const assembled = await gw.call('POST', multi.body.complete_url, { parts: etags });
    expect(assembled.status, JSON.stringify(assembled.body)).toBe(200);
    expect(assembled.body.entry).toMatchObject({ size_bytes: big.length, sha256: sha256(big) });

    // A checksum that does not match: 409 naming the field, and nothing is left.
    const wrong = await gw.call('POST', `${v.entry('/direct/wrong.bin')}/upload-url`, { size_bytes: data.length, sha256: sha256('other') });
    await fetch(wrong.body.upload_url, { method: 'PUT', headers: wrong.body.headers, body: new Uint8Array(data) });
    const refused = await gw.call('POST', wrong.body.complete_url);
    expect(refused.status).toBe(409);
    expect(refused.body.details).toMatchObject({ reason: 'checksum_mismatch', field: 'sha256' });
    expect((await gw.call('GET', v.entry('/direct/wrong.bin'))).status).toBe(404);
    expect(await leftovers(v)).toEqual([]);

    // A URL that is never used, or used and never completed, leaves nothing once it expires.
    const abandoned = await gw.call('POST', `${v.entry('/direct/abandoned.bin')}/upload-url`, { size_bytes: 10 });
    await fetch(abandoned.body.upload_url, { method: 'PUT', headers: abandoned.body.headers, body: new Uint8Array(10).fill(1) });
    expect((await leftovers(v)).length).toBe(1);
    await expireNow(abandoned.body.upload_id);
    await waitFor(
      async () => (await db().uploadSession.findUnique({ where: { id: abandoned.body.upload_id } }))?.status === 'expired',
      15_000,
    );
    await waitFor(async () => (await leftovers(v)).length === 0, 15_000);
    expect(await reserved(v)).toBe(0n);

    // size_bytes is required and bounded; the field is named.
    const bad = await gw.call('POST', `${v.entry('/direct/x')}/upload-url`, { mime_type: 'text/plain' });
    expect(bad.status).toBe(422);
    expect(bad.body.detail[0].loc).toEqual(['body', 'size_bytes']);
  });
});
