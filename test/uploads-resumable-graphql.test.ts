import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createKey, startGateway, type TestGateway } from './helpers/app.js';
import { subscribe } from './helpers/graphql-ws.js';
import { randomData, stalledPatch, tusUpload } from './helpers/tus.js';
import { MiB, sha256, uploadVolume } from './helpers/uploads.js';

/**
 * The GraphQL side of upload sessions: createUpload (signed URL and tus), uploadStatus,
 * completeUpload, abortUpload and the uploadProgress subscription, on the local blob store.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
});
afterAll(async () => {
  await gw?.stop();
});

const CREATE = `mutation($v: ID!, $p: String!, $input: CreateUploadInput, $ev: Int) {
  createUpload(volumeId: $v, path: $p, input: $input, expectedVersion: $ev) {
    uploadUrl method headers expiresAt
    upload { id status protocol sizeBytes reservedBytes bytesReceived path }
  }
}`;
const COMPLETE = `mutation($v: ID!, $u: ID!) { completeUpload(volumeId: $v, uploadId: $u) { id status bytesReceived reservedBytes entry { path version sizeBytes sha256 mimeType } } }`;
const ABORT = `mutation($v: ID!, $u: ID!) { abortUpload(volumeId: $v, uploadId: $u) { id status reservedBytes } }`;
const STATUS = `query($v: ID!, $u: ID!) { uploadStatus(volumeId: $v, uploadId: $u) { id status bytesReceived sizeBytes entry { version } } }`;
const PROGRESS = `subscription($v: ID!, $u: ID!) { uploadProgress(volumeId: $v, uploadId: $u) { uploadId status bytesReceived sizeBytes percent entryId entryVersion } }`;

describe('upload sessions through GraphQL', () => {
  it('creates a signed upload URL, takes the PUT, completes with checks, and reports status', async () => {
    const v = await uploadVolume(gw, 'acme');
    const data = randomData(2 * MiB + 9);
    const created = await gw.gql(CREATE, {
      v: v.volumeId,
      p: '/gql/direct.bin',
      input: { sizeBytes: data.length, sha256: sha256(data), mimeType: 'application/x-test', tags: ['g'] },
    });
    expect(created.body.errors, JSON.stringify(created.body)).toBeUndefined();
    const c = created.body.data.createUpload;
    expect(c).toMatchObject({
      method: 'PUT',
      upload: { status: 'uploading', protocol: 'signed_url', sizeBytes: data.length, reservedBytes: data.length },
    });
    expect((await fetch(c.uploadUrl, { method: 'PUT', headers: c.headers, body: new Uint8Array(data) })).status).toBe(200);
    const done = await gw.gql(COMPLETE, { v: v.volumeId, u: c.upload.id });
    expect(done.body.errors, JSON.stringify(done.body)).toBeUndefined();
    expect(done.body.data.completeUpload).toMatchObject({
      status: 'completed',
      reservedBytes: 0,
      entry: { path: '/gql/direct.bin', version: 1, sizeBytes: data.length, sha256: sha256(data), mimeType: 'application/x-test' },
    });
    const status = await gw.gql(STATUS, { v: v.volumeId, u: c.upload.id });
    expect(status.body.data.uploadStatus).toMatchObject({ status: 'completed', bytesReceived: data.length, entry: { version: 1 } });
    // Aborting a completed upload is a conflict; validation errors name the field.
    expect((await gw.gql(ABORT, { v: v.volumeId, u: c.upload.id })).body.errors[0].extensions.code).toBe('CONFLICT');
    const bad = await gw.gql(CREATE, { v: v.volumeId, p: '/gql/x', input: { mimeType: 'text/plain' } });
    expect(bad.body.errors[0].extensions.code).toBe('VALIDATION_FAILED');
    expect(JSON.stringify(bad.body.errors[0].extensions)).toContain('sizeBytes');
    const over = await gw.gql(CREATE, { v: v.volumeId, p: '/gql/direct.bin', input: { sizeBytes: 1 }, ev: 7 });
    expect(over.body.errors[0].extensions.code).toBe('CONFLICT');
  });

  it('streams uploadProgress for a tus upload opened by createUpload, ending with completed', async () => {
    const v = await uploadVolume(gw, 'acme');
    const data = randomData(24 * MiB);
    const created = await gw.gql(CREATE, { v: v.volumeId, p: '/gql/tus.bin', input: { protocol: 'tus', sizeBytes: data.length } });
    expect(created.body.errors, JSON.stringify(created.body)).toBeUndefined();
    const c = created.body.data.createUpload;
    expect(c).toMatchObject({ method: 'PATCH', upload: { protocol: 'tus', status: 'uploading' } });
    const sub = subscribe(gw.url, ADMIN_KEY, PROGRESS, { v: v.volumeId, u: c.upload.id });
    await sub.until((events) => events.length >= 1);
    // tus-js-client resumes the upload URL createUpload answered, in 4 MiB PATCHes.
    const result = await tusUpload(`${gw.url}${v.volumeUrl}/uploads`, data, { uploadUrl: `${gw.url}${c.uploadUrl}`, chunkSize: 4 * MiB });
    expect(result.error).toBeNull();
    const events = await sub.until((e) => e.at(-1)?.status === 'completed');
    await sub.close();
    expect(events[0]).toMatchObject({ status: 'uploading', bytesReceived: 0, sizeBytes: data.length });
    for (let i = 1; i < events.length; i++) expect(events[i].bytesReceived).toBeGreaterThanOrEqual(events[i - 1].bytesReceived);
    expect(events.length).toBeGreaterThan(2);
    expect(events.at(-1)).toMatchObject({ status: 'completed', bytesReceived: data.length, percent: 100, entryVersion: 1 });
    expect((await gw.call('GET', v.entry('/gql/tus.bin'))).body.sha256).toBe(sha256(data));
  });

  it('aborts an upload (reservation freed) and keeps app keys to their mounts', async () => {
    const v = await uploadVolume(gw, 'acme');
    const created = await gw.gql(CREATE, { v: v.volumeId, p: '/private/a.bin', input: { sizeBytes: 1000 } });
    const id = created.body.data.createUpload.upload.id;
    await gw.call('POST', `${v.volumeUrl}/mounts`, { app_id: 'app1', path_pattern: '/public/**', access_level: 'write' });
    const key = await createKey(gw, 'acme', ['volumes:read', 'entries:read', 'entries:write'], 'app1');
    expect((await gw.gql(STATUS, { v: v.volumeId, u: id }, key)).body.errors[0].extensions.code).toBe('NOT_FOUND');
    expect((await gw.gql(ABORT, { v: v.volumeId, u: id }, key)).body.errors[0].extensions.code).toBe('NOT_FOUND');
    expect(
      (await gw.gql(CREATE, { v: v.volumeId, p: '/private/b.bin', input: { sizeBytes: 1 } }, key)).body.errors[0].extensions.code,
    ).toBe('NOT_FOUND');
    const sub = subscribe(gw.url, key, PROGRESS, { v: v.volumeId, u: id });
    await sub.done.catch(() => {});
    expect(sub.events).toEqual([]);
    expect(sub.errors[0]?.extensions?.code).toBe('NOT_FOUND');
    await sub.close();

    const aborted = await gw.gql(ABORT, { v: v.volumeId, u: id });
    expect(aborted.body.data.abortUpload).toMatchObject({ status: 'aborted', reservedBytes: 0 });
    const volume = await gw.app.database.prisma.volume.findUniqueOrThrow({ where: { id: v.volumeId } });
    expect(volume.reservedBytes).toBe(0n);
    expect((await gw.gql(COMPLETE, { v: v.volumeId, u: id })).body.errors[0].extensions.code).toBe('NOT_FOUND');
  });

  it('abortUpload stops a tus PATCH still running on this gateway first, then removes every byte', async () => {
    const v = await uploadVolume(gw, 'acme');
    const { uploadId, stale, ended } = await stalledPatch(gw, v, '/stopped.bin', randomData(4 * MiB));
    // The abort takes the upload's lock (tus's own, in this process), which asks the PATCH to let go;
    // before, it removed the bytes while the PATCH went on writing.
    const aborted = await gw.gql(ABORT, { v: v.volumeId, u: uploadId });
    const answered = Date.now();
    expect(aborted.body.data.abortUpload).toMatchObject({ status: 'aborted', reservedBytes: 0 });
    expect(ended(), 'the PATCH had ended when the abort answered').toBeGreaterThan(0);
    expect(ended()).toBeLessThanOrEqual(answered);
    await stale;
    const db = gw.app.database.prisma;
    const session = await db.uploadSession.findUniqueOrThrow({ where: { id: uploadId } });
    const { s3Bucket } = await db.workspace.findUniqueOrThrow({ where: { id: session.workspaceId } });
    await expect(gw.app.runtime.resumable.dataStore(s3Bucket).getUpload(session.storageId)).rejects.toBeDefined();
  });
});
