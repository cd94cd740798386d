import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { backUp, entriesOf, readBlob, sha256 } from './helpers/backups.js';
import { expectExactUsage, putText, usage } from './helpers/entries.js';
import { S3RVER_CREDENTIALS, startS3rver } from './helpers/s3rver.js';
import { expectValidation, listKeys, type UploadVolume, upload, uploadVolume } from './helpers/uploads.js';

/**
 * Backups to the workspace bucket and restores from them, over real HTTP, on the local blob store
 * and on S3 (s3rver): the round trip keeps every entry byte for byte, and a backup that does not
 * match its checksums restores nothing.
 */
const stores = [
  { name: 'local', start: async () => ({ env: {} as Record<string, string>, stop: async () => {} }) },
  {
    name: 's3',
    start: async () => {
      const s3 = await startS3rver();
      return {
        env: {
          S3_ENDPOINT: s3.endpoint,
          S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
          S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
        } as Record<string, string>,
        stop: s3.stop,
      };
    },
  },
];

const PATHS = ['/files/blob.bin', '/files/copy.bin', '/files/table.csv', '/notes/plan.json', '/notes/readme.md', '/tmp/short-lived.txt'];

/** A volume holding JSON, text and file entries with every kind of metadata. */
async function populate(gw: TestGateway, v: UploadVolume) {
  const put = async (path: string, body: unknown) => {
    const res = await gw.call('PUT', v.entry(path), body);
    expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
  };
  await put('/notes/plan.json', {
    content: { goal: 'ship', steps: [1, 2, { nested: 'ünïcödé ✓' }], ok: true, none: null },
    tags: ['plan', 'q3'],
    metadata: { owner: 'ana', priority: 2, labels: { a: 1 } },
    schema_id: 'plan/v1',
  });
  // Version 2 of the same entry: the version travels with it.
  await put('/notes/plan.json', {
    content: { goal: 'ship', version: 2, steps: [{ nested: 'ünïcödé ✓' }] },
    tags: ['plan'],
    metadata: { owner: 'ana' },
    schema_id: 'plan/v2',
  });
  await put('/notes/readme.md', { content_text: '# Readme\n\nLine two — with a dash.\n', mime_type: 'text/markdown' });
  await put('/tmp/short-lived.txt', { content_text: 'expires later', ttl_seconds: 86_400, execution_id: 'run-7' });
  const binary = randomBytes(300_000);
  const up1 = await upload(gw, v.upload('/files/blob.bin'), { data: binary, filename: 'blob.bin' }, { tags: 'bin', metadata: '{"k":"v"}' });
  expect(up1.status, JSON.stringify(up1.body)).toBe(201);
  const csv = Buffer.from('col1,col2\n1,2\n3,4\n');
  const up2 = await upload(gw, v.upload('/files/table.csv'), { data: csv, filename: 'table.csv', contentType: 'text/csv' });
  expect(up2.status, JSON.stringify(up2.body)).toBe(201);
  // The same bytes under two paths: each restored entry gets an object of its own.
  const up3 = await upload(gw, v.upload('/files/copy.bin'), { data: binary, filename: 'copy.bin' });
  expect(up3.status, JSON.stringify(up3.body)).toBe(201);
}

describe.each(stores)('backup and restore on the $name blob store', (store) => {
  let gw: TestGateway;
  let stopStore = async () => {};
  let v: UploadVolume;
  let backup: any;
  const restoreUrl = (ws = v.workspaceId) => `/v1/orgs/acme/workspaces/${ws}/volumes/restore`;
  const volumeUrlOf = (volumeId: string) => `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes/${volumeId}`;
  /** Object keys of live volumes (not backups) in the bucket. */
  const volumeObjects = () => listKeys(gw, v.bucket, 'volumes/');

  beforeAll(async () => {
    const s = await store.start();
    stopStore = s.stop;
    gw = await startGateway({ ...s.env, JOB_POLL_MS: '50' });
    v = await uploadVolume(gw, 'acme', {
      tags: ['src'],
      chunk_size: 256,
      chunk_overlap: 32,
      max_file_count: 100,
      description: 'the source',
    });
    await populate(gw, v);
    backup = await backUp(gw, v);
  });
  afterAll(async () => {
    await gw?.stop();
    await stopStore();
  });

  it('writes every entry, every file and a manifest with the sha256 of each object under backups/{volume_id}/{timestamp}/', async () => {
    expect(backup).toMatchObject({
      backup_id: expect.any(String),
      volume_id: v.volumeId,
      status: 'completed',
      entry_count: 6,
      file_count: 3,
      error: null,
      progress: { phase: 'done', percent: 100, total: 6, processed: 6 },
      location: { bucket: v.bucket, prefix: `backups/${v.volumeId}/${backup.timestamp}/` },
    });
    expect(backup.sync_job_id).toBe(backup.backup_id);
    expect(backup.timestamp).toMatch(/^\d{8}T\d{9}Z$/);
    expect(Date.parse(backup.snapshot_at)).toBeGreaterThanOrEqual(Date.parse(backup.created_at));
    const prefix: string = backup.location.prefix;
    const manifestBytes = await readBlob(gw, v.bucket, `${prefix}manifest.json`);
    expect(sha256(manifestBytes)).toBe(backup.manifest_sha256);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    expect(manifest).toMatchObject({
      format: 'volumes-gateway-backup',
      format_version: 1,
      backup_id: backup.backup_id,
      entry_count: 6,
      volume: {
        id: v.volumeId,
        settings: {
          tags: ['src'],
          chunk_size: 256,
          chunk_overlap: 32,
          max_file_count: 100,
          description: 'the source',
          indexing_mode: 'auto',
        },
      },
    });
    // The prefix holds exactly the manifest and the objects it lists, each matching its checksum.
    const keys = await listKeys(gw, v.bucket, prefix);
    expect(keys).toEqual([`${prefix}manifest.json`, ...manifest.objects.map((o: { key: string }) => prefix + o.key)].sort());
    let total = manifestBytes.length;
    for (const o of manifest.objects) {
      const bytes = await readBlob(gw, v.bucket, prefix + o.key);
      expect(sha256(bytes), o.key).toBe(o.sha256);
      expect(bytes.length).toBe(o.size);
      total += bytes.length;
    }
    expect(backup.total_bytes).toBe(total);
    expect(manifest.objects.filter((o: { kind: string }) => o.kind === 'file')).toHaveLength(3);
    const lines = (await readBlob(gw, v.bucket, `${prefix}entries/000001.jsonl`)).toString('utf8').trim().split('\n');
    const records = lines.map((l) => JSON.parse(l));
    expect(records.map((r) => r.path).sort()).toEqual(PATHS);
    expect(records.find((r) => r.path === '/notes/plan.json')).toMatchObject({
      version: 2,
      schema_id: 'plan/v2',
      tags: ['plan'],
      metadata: { owner: 'ana' },
      content: { goal: 'ship', version: 2 },
    });
  });

  it('restores into a new volume: every entry, its metadata and its bytes identical, counters exact', async () => {
    const before = await volumeObjects();
    const res = await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id, name: 'restored' });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({
      backup_id: backup.backup_id,
      source_volume_id: v.volumeId,
      snapshot_at: backup.snapshot_at,
      restored: { entries: 6, files: 3, skipped_expired: 0 },
      volume: { name: 'restored', tags: ['src'], description: 'the source', max_file_count: 100, entry_count: 6 },
    });
    const restored = res.body.volume;
    expect(restored.volume_id).not.toBe(v.volumeId);
    const source = await entriesOf(gw, v.volumeUrl, v.volumeId);
    const copy = await entriesOf(gw, volumeUrlOf(restored.volume_id), restored.volume_id);
    expect(Object.keys(copy)).toEqual(PATHS);
    expect(copy).toEqual(source);
    // Byte for byte: the downloads hash to the sha256 each entry records.
    for (const path of PATHS.filter((p) => p.startsWith('/files/'))) {
      expect(copy[path].downloaded_sha256).toBe(copy[path].sha256);
      expect(copy[path].downloaded_size).toBe(copy[path].size_bytes);
    }
    const restoredVolume = { ...v, volumeId: restored.volume_id, volumeUrl: volumeUrlOf(restored.volume_id) };
    await expectExactUsage(gw, restoredVolume as never, 'restored counters');
    expect(await usage(gw, restoredVolume as never)).toMatchObject({
      entry_count: (await usage(gw, v)).entry_count,
      used_bytes: (await usage(gw, v)).used_bytes,
    });
    // Each restored file has an object of its own in the new volume's prefix.
    const added = (await volumeObjects()).filter((k) => !before.includes(k));
    expect(added).toHaveLength(3);
    expect(added.every((k) => k.startsWith(`volumes/${restored.volume_id}/objects/`))).toBe(true);
    // And it is searchable once the reindex the restore queued has run.
    await waitFor(async () => (await gw.call('GET', volumeUrlOf(restored.volume_id))).body.reindex_status === 'completed', 30_000);
    const hits = await gw.call('POST', `${volumeUrlOf(restored.volume_id)}/search`, { query: 'Readme line two', top_k: 3 });
    expect(hits.status, JSON.stringify(hits.body)).toBe(200);
    expect(JSON.stringify(hits.body)).toContain('/notes/readme.md');
  });

  it('backs up label, volume_type and mount_path; a restore keeps chosen ones and re-defaults defaulted ones from its name', async () => {
    const chosen = await uploadVolume(gw, 'acme', { name: 'chosen', label: 'Chosen Label', volume_type: 'model', mount_path: '/m/chosen' });
    const defaulted = await uploadVolume(gw, 'acme', { name: 'Plain Name', volume_type: 'workspace' });
    const [chosenBackup, defaultedBackup] = [await backUp(gw, chosen), await backUp(gw, defaulted)];
    const manifest = JSON.parse((await readBlob(gw, chosen.bucket, `${chosenBackup.location.prefix}manifest.json`)).toString('utf8'));
    expect(manifest.volume.settings).toMatchObject({ label: 'Chosen Label', volume_type: 'model', mount_path: '/m/chosen' });
    const restoreInto = (ws: string, body: Record<string, unknown>) =>
      gw.call('POST', `/v1/orgs/acme/workspaces/${ws}/volumes/restore`, body);
    const a = await restoreInto(chosen.workspaceId, { backup_id: chosenBackup.backup_id, name: 'chosen-copy' });
    expect(a.status, JSON.stringify(a.body)).toBe(201);
    expect(a.body.volume).toMatchObject({ name: 'chosen-copy', label: 'Chosen Label', volume_type: 'model', mount_path: '/m/chosen' });
    const b = await restoreInto(defaulted.workspaceId, { backup_id: defaultedBackup.backup_id, name: 'Other Name' });
    expect(b.status, JSON.stringify(b.body)).toBe(201);
    expect(b.body.volume).toMatchObject({
      name: 'Other Name',
      label: 'Other Name',
      volume_type: 'workspace',
      mount_path: '/data/other-name',
    });
  });

  it('restores by source volume and timestamp (as shown, or the same instant in ISO 8601)', async () => {
    const compact = await gw.call('POST', restoreUrl(), { source_volume_id: v.volumeId, timestamp: backup.timestamp, name: 'by-ts' });
    expect(compact.status, JSON.stringify(compact.body)).toBe(201);
    expect(compact.body.backup_id).toBe(backup.backup_id);
    const iso = new Date(backup.created_at).toISOString();
    const byIso = await gw.call('POST', restoreUrl(), { source_volume_id: v.volumeId, timestamp: iso, name: 'by-iso' });
    expect(byIso.status, JSON.stringify(byIso.body)).toBe(201);
    expect(byIso.body.restored.entries).toBe(6);
  });

  it('refuses bad input: unknown backup 404, missing name 422, duplicate name 409, no source 422', async () => {
    const unknown = await gw.call('POST', restoreUrl(), { backup_id: '0190a000-0000-7000-8000-000000000000', name: 'x' });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ error: 'RESOURCE_NOT_FOUND', details: { resource_type: 'backup' } });
    expect((await gw.call('POST', restoreUrl(), { backup_id: 'not-an-id', name: 'x' })).status).toBe(404);
    const noTs = await gw.call('POST', restoreUrl(), { source_volume_id: v.volumeId, timestamp: '20000101T000000000Z', name: 'x' });
    expect(noTs.status).toBe(404);
    expectValidation(await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id }), ['body', 'name']);
    expectValidation(await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id, name: '' }), ['body', 'name']);
    expectValidation(await gw.call('POST', restoreUrl(), { name: 'x' }), ['body', 'backup_id']);
    expectValidation(await gw.call('POST', restoreUrl(), { source_volume_id: v.volumeId, name: 'x' }), ['body', 'timestamp']);
    expectValidation(await gw.call('POST', restoreUrl(), { source_volume_id: v.volumeId, timestamp: 'yesterday', name: 'x' }), [
      'body',
      'timestamp',
    ]);
    const before = await volumeObjects();
    const dup = await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id, name: (await gw.call('GET', v.volumeUrl)).body.name });
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({ error: 'CONFLICT', details: { field: 'name' } });
    expect(await volumeObjects()).toEqual(before);
    expect((await gw.call('GET', `${v.volumeUrl}/backups/0190a000-0000-7000-8000-000000000000`)).status).toBe(404);
    expect(
      (await gw.call('POST', `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes/0190a000-0000-7000-8000-000000000000/sync`)).status,
    ).toBe(404);
  });

  it('lists and shows backups', async () => {
    const list = await gw.call('GET', `${v.volumeUrl}/backups?limit=10`);
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ total: 1, has_more: false, next_cursor: null });
    expect(list.body.backups[0]).toEqual(backup);
    expectValidation(await gw.call('GET', `${v.volumeUrl}/backups?limit=0`), ['query', 'limit']);
  });

  it('a backup whose bytes were altered restores nothing, with an error naming the object', async () => {
    const prefix: string = backup.location.prefix;
    const manifest = JSON.parse((await readBlob(gw, v.bucket, `${prefix}manifest.json`)).toString('utf8'));
    const file = manifest.objects.find((o: { kind: string }) => o.kind === 'file');
    const original = await readBlob(gw, v.bucket, prefix + file.key);
    const tampered = Buffer.from(original);
    tampered[tampered.length - 1] = (tampered.at(-1) as number) ^ 0xff;
    await gw.app.blobStore.put(v.bucket, prefix + file.key, Readable.from([tampered]));
    const volumesBefore = (await gw.call('GET', `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes?limit=200`)).body.total;
    const objectsBefore = await volumeObjects();
    try {
      const res = await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id, name: 'from-tampered' });
      expect(res.status, JSON.stringify(res.body)).toBe(409);
      expect(res.body).toMatchObject({
        error: 'CONFLICT',
        details: { reason: 'checksum_mismatch', object: file.key, expected_sha256: file.sha256, actual_sha256: sha256(tampered) },
      });
      expect(res.body.message).toMatch(/failed verification.*Nothing was restored/);
      expect((await gw.call('GET', `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes?limit=200`)).body.total).toBe(volumesBefore);
      expect(await volumeObjects()).toEqual(objectsBefore);

      // An altered entries part, and a missing object, are refused the same way.
      await gw.app.blobStore.put(v.bucket, prefix + file.key, Readable.from([original]));
      const part = `${prefix}entries/000001.jsonl`;
      const records = await readBlob(gw, v.bucket, part);
      await gw.app.blobStore.put(v.bucket, part, Readable.from([Buffer.from(records.toString('utf8').replace('ship', 'sink'))]));
      const altered = await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id, name: 'from-tampered' });
      expect(altered.status).toBe(409);
      expect(altered.body.details).toMatchObject({ reason: 'checksum_mismatch', object: 'entries/000001.jsonl' });
      await gw.app.blobStore.put(v.bucket, part, Readable.from([records]));
      await gw.app.blobStore.delete(v.bucket, prefix + file.key);
      const missing = await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id, name: 'from-tampered' });
      expect(missing.status).toBe(409);
      expect(missing.body.details).toMatchObject({ reason: 'object_missing', object: file.key });
      // The manifest itself is checked against the sha256 recorded when the backup completed.
      await gw.app.blobStore.put(v.bucket, prefix + file.key, Readable.from([original]));
      const manifestBytes = await readBlob(gw, v.bucket, `${prefix}manifest.json`);
      await gw.app.blobStore.put(v.bucket, `${prefix}manifest.json`, Readable.from([Buffer.concat([manifestBytes, Buffer.from(' ')])]));
      const badManifest = await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id, name: 'from-tampered' });
      expect(badManifest.status).toBe(409);
      expect(badManifest.body.details).toMatchObject({ reason: 'checksum_mismatch', object: 'manifest.json' });
      await gw.app.blobStore.put(v.bucket, `${prefix}manifest.json`, Readable.from([manifestBytes]));
      expect(await volumeObjects()).toEqual(objectsBefore);
      expect((await gw.call('GET', `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes?limit=200`)).body.total).toBe(volumesBefore);
    } finally {
      await gw.app.blobStore.put(v.bucket, prefix + file.key, Readable.from([original]));
    }
    // Intact again: it restores.
    expect((await gw.call('POST', restoreUrl(), { backup_id: backup.backup_id, name: 'after-repair' })).status).toBe(201);
  });
});

describe('backup access', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ JOB_POLL_MS: '50' });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('sync needs volumes:write and, for app keys, an admin mount over the whole volume; restore needs volumes:write and no app key', async () => {
    const v = await uploadVolume(gw, 'acme');
    await putText(gw, v, '/a.txt', 'a');
    const reader = await createKey(gw, 'acme', ['volumes:read', 'entries:read']);
    const writer = await createKey(gw, 'acme', ['volumes:write', 'volumes:read']);
    const app = await createKey(gw, 'acme', ['volumes:read', 'volumes:write'], 'bot');
    const other = await createKey(gw, 'other', ['admin']);

    const denied = await gw.call('POST', `${v.volumeUrl}/sync`, undefined, reader);
    expect(denied.status).toBe(403);
    expect(denied.body.details.required_permission).toBe('volumes:write');
    expect((await gw.call('POST', `${v.volumeUrl}/sync`, undefined, other)).status).toBe(404);
    expect((await gw.call('POST', `${v.volumeUrl}/sync`, undefined, null)).status).toBe(401);

    // An app with a write mount elsewhere, or an admin mount on a sub-tree, may not back up the whole volume.
    expect((await gw.call('POST', v.mounts, { app_id: 'bot', path_pattern: '/b/**', access_level: 'write' })).status).toBe(201);
    expect((await gw.call('POST', v.mounts, { app_id: 'bot', path_pattern: '/a/**', access_level: 'admin' })).status).toBe(201);
    const appDenied = await gw.call('POST', `${v.volumeUrl}/sync`, undefined, app);
    expect(appDenied.status).toBe(403);
    expect(appDenied.body.details.required_permission).toBe('volume:admin');
    expect((await gw.call('GET', `${v.volumeUrl}/backups`, undefined, app)).status).toBe(403);
    expect((await gw.call('POST', v.mounts, { app_id: 'bot', path_pattern: '/**', access_level: 'admin' })).status).toBe(201);
    const b = await backUp(gw, v, app);
    expect(b.created_by).toMatch(/^key:/);
    expect((await gw.call('GET', `${v.volumeUrl}/backups`, undefined, reader)).body.total).toBe(1);
    expect((await gw.call('GET', `${v.volumeUrl}/backups/${b.backup_id}`, undefined, other)).status).toBe(404);

    const restore = `/v1/orgs/acme/workspaces/${v.workspaceId}/volumes/restore`;
    expect((await gw.call('POST', restore, { backup_id: b.backup_id, name: 'r' }, reader)).status).toBe(403);
    const appRestore = await gw.call('POST', restore, { backup_id: b.backup_id, name: 'r' }, app);
    expect(appRestore.status).toBe(403);
    expect(
      (await gw.call('POST', `/v1/orgs/other/workspaces/${v.workspaceId}/volumes/restore`, { backup_id: b.backup_id, name: 'r' }, other))
        .status,
    ).toBe(404);
    expect((await gw.call('POST', restore, { backup_id: b.backup_id, name: 'r' }, writer)).status).toBe(201);
  });

  it('one backup at a time per volume: a sync while one is queued or running answers that one', async () => {
    const v = await uploadVolume(gw, 'acme');
    await gw.app.jobs.stop(); // nothing runs: the first backup stays queued
    const first = await gw.call('POST', `${v.volumeUrl}/sync`);
    const [second, third] = await Promise.all([gw.call('POST', `${v.volumeUrl}/sync`), gw.call('POST', `${v.volumeUrl}/sync`)]);
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ message: 'Volume sync to S3 initiated', volume_id: v.volumeId, status: 'queued' });
    expect(first.body.progress).toMatchObject({ phase: 'queued', percent: 0 });
    expect(second.body.backup_id).toBe(first.body.backup_id);
    expect(third.body.backup_id).toBe(first.body.backup_id);
    expect((await gw.call('GET', `${v.volumeUrl}/backups`)).body.total).toBe(1);
    // A record whose job is gone (its failure could not be recorded) does not block the next backup.
    await gw.app.database.prisma.$executeRawUnsafe('DELETE FROM jobs WHERE dedupe_key = $1', `volume_backup:${first.body.backup_id}`);
    const next = await gw.call('POST', `${v.volumeUrl}/sync`);
    expect(next.status).toBe(202);
    expect(next.body.backup_id).not.toBe(first.body.backup_id);
    const stale = await gw.call('GET', `${v.volumeUrl}/backups/${first.body.backup_id}`);
    expect(stale.body).toMatchObject({ status: 'failed', error: 'the backup job ended without finishing' });
  });

  it('a sync while the workspace bucket is not active is a 409', async () => {
    const v = await uploadVolume(gw, 'acme'); // provisioning done, so nothing flips it back meanwhile
    await gw.app.database.prisma.$executeRawUnsafe("UPDATE workspaces SET bucket_status = 'pending' WHERE id = $1", v.workspaceId);
    const res = await gw.call('POST', `${v.volumeUrl}/sync`);
    expect(res.status).toBe(409);
    expect(res.body.details).toMatchObject({ bucket_status: 'pending' });
  });
});
