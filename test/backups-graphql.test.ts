import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKUP, backupJob } from '../src/domain/backups/job.js';
import { JobQueue } from '../src/jobs/queue.js';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { readBlob } from './helpers/backups.js';
import { putText } from './helpers/entries.js';
import { subscribe } from './helpers/graphql-ws.js';
import { type UploadVolume, upload, uploadVolume } from './helpers/uploads.js';

/**
 * Backups through GraphQL: startVolumeBackup, the backupProgress subscription over graphql-ws
 * (authorised when it opens, ended by the final event), volumeBackups/backup queries and
 * restoreVolume with its typed errors. The gateway runs no job workers of its own, so the test
 * decides when the backup runs and can watch it from the start.
 */
let gw: TestGateway;
let v: UploadVolume;
let runner: JobQueue | undefined;
beforeAll(async () => {
  gw = await startGateway({ JOB_CONCURRENCY: '0' });
  v = await uploadVolume(gw, 'acme');
  for (let i = 0; i < 30; i++) await putText(gw, v, `/docs/${i}.md`, `document ${i}`);
  for (let i = 0; i < 3; i++) {
    expect((await upload(gw, v.upload(`/files/${i}.bin`), { data: randomBytes(50_000), filename: `${i}.bin` })).status).toBe(201);
  }
});
afterAll(async () => {
  await runner?.stop();
  await gw?.stop();
});

const PROGRESS = 'backupId volumeId status phase total processed percent bytesCopied error startedAt completedAt';

interface Progress {
  backupId: string;
  volumeId: string;
  status: string;
  phase: string;
  total: number;
  processed: number;
  percent: number;
  bytesCopied: number;
  error: string | null;
  completedAt: string | null;
}

/** backupProgress over graphql-ws. */
const watch = (backupId: string, key = ADMIN_KEY) =>
  subscribe<Progress>(gw.url, key, `subscription($id: ID!) { backupProgress(backupId: $id) { ${PROGRESS} } }`, { id: backupId });

describe('backups over GraphQL', () => {
  let backupId: string;

  it('startVolumeBackup queues a backup; backupProgress streams it to its final event and ends', async () => {
    const started = await gw.gql(`mutation($v: ID!) { startVolumeBackup(volumeId: $v) { id volumeId status progress { ${PROGRESS} } } }`, {
      v: v.volumeId,
    });
    expect(started.body.errors).toBeUndefined();
    const backup = started.body.data.startVolumeBackup;
    expect(backup).toMatchObject({ volumeId: v.volumeId, status: 'queued', progress: { phase: 'queued', percent: 0 } });
    backupId = backup.id;
    // Asking again while it is queued answers the same backup.
    const again = await gw.gql('mutation($v: ID!) { startVolumeBackup(volumeId: $v) { id } }', { v: v.volumeId });
    expect(again.body.data.startVolumeBackup.id).toBe(backupId);

    const sub = watch(backupId);
    try {
      // The current state arrives first: the subscription is live before the job runs.
      await waitFor(async () => sub.events.length > 0);
      expect(sub.events[0]).toMatchObject({ backupId, status: 'queued' });
      // A queue of the test's own on the gateway's runtime, with the backup handler only.
      runner = new JobQueue(gw.app.runtime.db, gw.app.runtime.log, { concurrency: 1, leaseMs: 30_000, pollMs: 50 });
      runner.register(BACKUP, backupJob(gw.app.runtime));
      runner.start();
      await waitFor(async () => sub.completed, 30_000);
      expect(sub.errors).toEqual([]);
      const statuses = sub.events.map((e) => e.status);
      expect(statuses.at(-1)).toBe('completed');
      expect(statuses).toContain('running');
      expect(statuses.filter((s) => s === 'completed')).toHaveLength(1);
      const percents = sub.events.map((e) => e.percent);
      expect(percents).toEqual([...percents].sort((a, b) => a - b));
      expect(sub.events.at(-1)).toMatchObject({ phase: 'done', percent: 100, total: 33, processed: 33, error: null });
      expect(sub.events.at(-1)?.bytesCopied).toBe(150_000);
      expect(sub.events.at(-1)?.completedAt).not.toBeNull();
    } finally {
      await sub.close();
    }
  });

  it('subscribing to a finished backup yields its final state and ends', async () => {
    const sub = watch(backupId);
    try {
      await waitFor(async () => sub.completed);
      expect(sub.events).toHaveLength(1);
      expect(sub.events[0]).toMatchObject({ status: 'completed', percent: 100 });
    } finally {
      await sub.close();
    }
  });

  it('authorises the subscription when it opens', async () => {
    const other = await createKey(gw, 'other', ['admin']);
    const noScope = await createKey(gw, 'acme', ['entries:read']);
    const app = await createKey(gw, 'acme', ['volumes:read'], 'reader-app');
    expect((await gw.call('POST', v.mounts, { app_id: 'reader-app', path_pattern: '/**', access_level: 'read' })).status).toBe(201);
    for (const [key, code] of [
      [other, 'NOT_FOUND'],
      [noScope, 'FORBIDDEN'],
      [app, 'FORBIDDEN'],
    ] as const) {
      const sub = watch(backupId, key);
      try {
        await waitFor(async () => sub.errors.length > 0 || sub.completed);
        expect(sub.events).toEqual([]);
        expect(sub.errors[0]?.extensions?.code ?? sub.errors[0]?.message, key).toBe(code);
      } finally {
        await sub.close();
      }
    }
    const unknown = watch('0190a000-0000-7000-8000-000000000000');
    try {
      await waitFor(async () => unknown.errors.length > 0);
      expect(unknown.errors[0].extensions.code).toBe('NOT_FOUND');
    } finally {
      await unknown.close();
    }
  });

  it('volumeBackups and backup show it', async () => {
    const res = await gw.gql(
      `query($v: ID!, $b: ID!) {
        volumeBackups(volumeId: $v, first: 10) { totalCount edges { node { id status entryCount fileCount totalBytes manifestSha256 prefix timestamp snapshotAt } } }
        backup(id: $b) { id status volumeName progress { percent phase } }
      }`,
      { v: v.volumeId, b: backupId },
    );
    expect(res.body.errors).toBeUndefined();
    const { volumeBackups, backup } = res.body.data;
    expect(volumeBackups.totalCount).toBe(1);
    const node = volumeBackups.edges[0].node;
    expect(node).toMatchObject({
      id: backupId,
      status: 'completed',
      entryCount: 33,
      fileCount: 3,
      prefix: `backups/${v.volumeId}/${node.timestamp}/`,
    });
    expect(node.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(backup).toMatchObject({ id: backupId, status: 'completed', progress: { percent: 100, phase: 'done' } });
  });

  it('restoreVolume creates the volume, and refuses bad input with typed errors', async () => {
    const mutation = `mutation($input: RestoreVolumeInput!) {
      restoreVolume(input: $input) { backupId sourceVolumeId restoredEntries restoredFiles skippedExpired volume { id name entryCount usedBytes } }
    }`;
    const ok = await gw.gql(mutation, { input: { workspaceId: v.workspaceId, backupId, name: 'gql-restored' } });
    expect(ok.body.errors).toBeUndefined();
    expect(ok.body.data.restoreVolume).toMatchObject({
      backupId,
      sourceVolumeId: v.volumeId,
      restoredEntries: 33,
      restoredFiles: 3,
      skippedExpired: 0,
      volume: { name: 'gql-restored', entryCount: 33 },
    });
    const source = await gw.call('GET', v.volumeUrl);
    expect(ok.body.data.restoreVolume.volume.usedBytes).toBe(source.body.used_bytes);

    const code = async (input: Record<string, unknown>) => {
      const res = await gw.gql(mutation, { input: { workspaceId: v.workspaceId, ...input } });
      return res.body.errors?.[0]?.extensions;
    };
    expect(await code({ backupId: '0190a000-0000-7000-8000-000000000000', name: 'x' })).toMatchObject({ code: 'NOT_FOUND' });
    expect(await code({ backupId, name: 'gql-restored' })).toMatchObject({ code: 'CONFLICT', field: 'name' });
    const missing = await code({ name: 'x' });
    expect(missing.code).toBe('VALIDATION_FAILED');
    expect(missing.fields[0].path).toEqual(['input', 'backupId']);
    expect(await code({ sourceVolumeId: v.volumeId, timestamp: 'soon', name: 'x' })).toMatchObject({ code: 'VALIDATION_FAILED' });

    // A tampered object: CONFLICT naming it, and no volume.
    const manifestKey = `backups/${v.volumeId}/`;
    const prefix: string = (await gw.gql('query($b: ID!) { backup(id: $b) { prefix } }', { b: backupId })).body.data.backup.prefix;
    expect(prefix.startsWith(manifestKey)).toBe(true);
    const manifest = JSON.parse((await readBlob(gw, v.bucket, `${prefix}manifest.json`)).toString('utf8'));
    const file = manifest.objects.find((o: { kind: string }) => o.kind === 'file');
    const original = await readBlob(gw, v.bucket, prefix + file.key);
    await gw.app.blobStore.put(v.bucket, prefix + file.key, Readable.from([Buffer.concat([original, Buffer.from('!')])]));
    try {
      expect(await code({ backupId, name: 'never' })).toMatchObject({ code: 'CONFLICT', reason: 'checksum_mismatch', object: file.key });
      const names = await gw.gql('query($w: ID!) { volumes(workspaceId: $w, first: 50) { edges { node { name } } } }', {
        w: v.workspaceId,
      });
      expect(names.body.data.volumes.edges.map((e: { node: { name: string } }) => e.node.name)).not.toContain('never');
    } finally {
      await gw.app.blobStore.put(v.bucket, prefix + file.key, Readable.from([original]));
    }
  });
});
