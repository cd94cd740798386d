import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { backUp, entriesOf } from './helpers/backups.js';
import { putText } from './helpers/entries.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';
import { blobKeyOf, upload, uploadVolume } from './helpers/uploads.js';

/**
 * Backups in server mode: the snapshot transaction goes through @prisma/adapter-pg as BEGIN +
 * SET TRANSACTION ISOLATION LEVEL REPEATABLE READ (and READ COMMITTED with a share lock on the
 * volume row for the last round), against Postgres over the wire (PGlite behind pglite-socket).
 */
let db: PgliteServer | undefined;
let gw: TestGateway;
beforeAll(async () => {
  db = await startPgliteServer();
  gw = await startGateway({ DATABASE_URL: db.url, JOB_POLL_MS: '50' });
});
afterAll(async () => {
  await gw?.stop().catch((err) => console.error('gateway stop failed', err));
  await db?.stop();
});
afterEach(() => {
  gw.app.runtime.hooks.backupSnapshot = undefined;
});

describe('backups over DATABASE_URL', () => {
  it('round-trips a volume through a repeatable-read snapshot', async () => {
    expect(gw.app.database.mode).toBe('server');
    const v = await uploadVolume(gw, 'srv');
    await putText(gw, v, '/a.md', 'alpha');
    expect((await gw.call('PUT', v.entry('/b.json'), { content: { b: [1, 2] }, tags: ['t'], metadata: { m: 1 } })).status).toBe(201);
    expect((await upload(gw, v.upload('/c.bin'), { data: randomBytes(40_000), filename: 'c.bin' })).status).toBe(201);
    const backup = await backUp(gw, v);
    expect(backup).toMatchObject({ entry_count: 3, file_count: 1 });
    const res = await gw.call('POST', `/v1/orgs/srv/workspaces/${v.workspaceId}/volumes/restore`, {
      backup_id: backup.backup_id,
      name: 'copy',
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const copyUrl = `/v1/orgs/srv/workspaces/${v.workspaceId}/volumes/${res.body.volume.volume_id}`;
    expect(await entriesOf(gw, copyUrl, res.body.volume.volume_id)).toEqual(await entriesOf(gw, v.volumeUrl, v.volumeId));
  });

  it('a lost object: three optimistic rounds, then one under the volume lock, then a clear failure', async () => {
    const v = await uploadVolume(gw, 'srv');
    const rounds: [number, boolean][] = [];
    let key: string | undefined;
    gw.app.runtime.hooks.backupSnapshot = async (at) => {
      if (at.volumeId !== v.volumeId) return;
      if (at.inTransaction) rounds.push([at.round, at.locked]);
      if (at.round === 1 && !at.inTransaction) {
        expect((await upload(gw, v.upload('/lost.bin'), { data: randomBytes(1_000), filename: 'lost.bin' })).status).toBe(201);
        key = (await blobKeyOf(gw, v.volumeId, '/lost.bin')) ?? undefined;
      }
      if (at.round === 1 && at.inTransaction) await gw.app.blobStore.delete(v.bucket, key as string);
    };
    const res = await gw.call('POST', `${v.volumeUrl}/sync`);
    const failed = await waitFor(async () => {
      const b = await gw.call('GET', `${v.volumeUrl}/backups/${res.body.backup_id}`);
      return b.body.status === 'failed' ? b.body : undefined;
    }, 30_000);
    expect(failed.error).toMatch(/missing from the store; run reconcile/);
    expect(rounds).toEqual([
      [1, false],
      [2, false],
      [3, false],
      [4, true],
    ]);
  });
});
