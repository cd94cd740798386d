import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepUploadLocks, UPLOAD_LOCK_TIMINGS, uploadLocker } from '../src/domain/entries/upload-locks.js';
import { type TestGateway, waitFor } from './helpers/app.js';
import { ADMIN_KEY } from './helpers/http.js';
import { type Replicas, startReplicas } from './helpers/replicas.js';
import { randomData, stalledPatch, tusUpload } from './helpers/tus.js';
import { MiB, sha256, type UploadVolume, uploadVolume } from './helpers/uploads.js';

/**
 * tus uploads behind two replicas on one Postgres (helpers/replicas.ts; B shares A's data dir, so
 * its local blob store): one request at a time per upload across both (src/domain/entries/upload-locks.ts).
 * With a lock per process, a client resuming on the other replica wrote beside its own stale PATCH.
 */

let replicaSet: Replicas | undefined;
let a: TestGateway;

beforeAll(async () => {
  replicaSet = await startReplicas({ env: { DATABASE_POOL_SIZE: '4', SWEEP_INTERVAL_MS: '3600000' }, childEnv: { NODE_ENV: 'test' } });
  a = replicaSet.a;
}, 120_000);

afterAll(async () => {
  await replicaSet?.stop();
});

const lockRows = async () => (await a.app.database.prisma.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM upload_locks`)[0]?.n;

/** Two processes' lockers, as two replicas hold them (fast timings, so waits are short). */
const FAST = { ...UPLOAD_LOCK_TIMINGS, leaseMs: 2_000, renewMs: 50, retryMs: 20 };
const noop = () => undefined;

describe('the upload lock across replicas', () => {
  it('holds off a second holder, asks the first to let go, and passes to the second when it does', async () => {
    const one = uploadLocker(a.app.runtime, FAST).newLock('upload-1');
    const two = uploadLocker(a.app.runtime, FAST).newLock('upload-1');
    let asked = 0;
    await one.lock(new AbortController().signal, () => {
      asked++;
    });
    let taken = false;
    const second = two.lock(new AbortController().signal, noop).then(() => {
      taken = true;
    });
    // The holder hears the request (through its renewal) and keeps the lock until it unlocks.
    await waitFor(async () => asked === 1, 5_000);
    expect(taken).toBe(false);
    await one.unlock();
    await second;
    expect(taken).toBe(true);
    // A third waits out a timeout while the second holds: tus answers it 423, which clients retry.
    const three = uploadLocker(a.app.runtime, { ...FAST, acquireTimeoutMs: 200 }).newLock('upload-1');
    await expect(three.lock(new AbortController().signal, noop)).rejects.toMatchObject({ status_code: 423 });
    await two.unlock();
  });

  it('frees a lock whose holder died once its lease runs out, and the late holder learns it lost it', async () => {
    // A holder that never renews (its process stalled or died) holds only until its lease ends.
    const stalled = uploadLocker(a.app.runtime, { ...FAST, leaseMs: 300, renewMs: 60_000 }).newLock('upload-2');
    await stalled.lock(new AbortController().signal, noop);
    const next = uploadLocker(a.app.runtime, FAST).newLock('upload-2');
    const started = Date.now();
    await next.lock(new AbortController().signal, noop);
    expect(Date.now() - started).toBeLessThan(5_000);
    // Unlocking the stale lock does not free the new holder's.
    await stalled.unlock();
    const rows = await a.app.database.prisma.$queryRaw<
      { n: number }[]
    >`SELECT count(*)::int AS n FROM upload_locks WHERE upload_id = 'upload-2'`;
    expect(rows[0]?.n).toBe(1);
    await next.unlock();
    // A holder whose lease another took over is told to stop (its renewal finds the row gone).
    let lost = false;
    const slow = uploadLocker(a.app.runtime, { ...FAST, leaseMs: 200, renewMs: 400 }).newLock('upload-3');
    await slow.lock(new AbortController().signal, () => {
      lost = true;
    });
    const taker = uploadLocker(a.app.runtime, FAST).newLock('upload-3');
    await taker.lock(new AbortController().signal, noop);
    await waitFor(async () => lost, 5_000);
    await taker.unlock();
    await slow.unlock();
  });

  it("the maintenance sweep removes dead holders' leases a lease's length after they ran out, and no live one", async () => {
    const db = a.app.database.prisma;
    await db.$executeRaw`INSERT INTO upload_locks (upload_id, holder, expires_at) VALUES
      ('dead-long-ago', 'crashed', now() - interval '1 minute'), ('dead-just-now', 'crashed', now() - interval '1 second')`;
    const live = uploadLocker(a.app.runtime, FAST).newLock('upload-4');
    await live.lock(new AbortController().signal, noop);
    expect(await sweepUploadLocks(a.app.runtime)).toBe(1);
    const left = await db.$queryRaw<{ upload_id: string }[]>`SELECT upload_id FROM upload_locks ORDER BY upload_id`;
    expect(left.map((r) => r.upload_id)).toEqual(['dead-just-now', 'upload-4']);
    await live.unlock();
    await db.$executeRaw`DELETE FROM upload_locks WHERE upload_id = 'dead-just-now'`;
  });

  it('a client resuming on the other replica stops its stale PATCH there first, then finishes the upload intact', async () => {
    const v: UploadVolume = await uploadVolume(a, 'acme');
    const data = randomData(4 * MiB);
    const { location, stale, ended: staleEnded } = await stalledPatch(a, v, '/resumed.bin', data);
    expect(await lockRows()).toBe(1);

    // The client gives up on it and asks B where the upload stands: B's HEAD waits for the lock,
    // which A's PATCH gives up (tus's rule: the newer request wins; tus ends it with the bytes it
    // stored), and then answers. With a lock per process, B answered at once while A's PATCH went on.
    const b = replicaSet?.b.url as string;
    const head = await fetch(`${b}${location}`, { method: 'HEAD', headers: { 'X-API-Key': ADMIN_KEY, 'Tus-Resumable': '1.0.0' } });
    const headAnswered = Date.now();
    expect(head.status).toBe(200);
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeLessThanOrEqual(MiB);
    expect(staleEnded(), 'the stale PATCH had ended when B answered').toBeGreaterThan(0);
    expect(staleEnded()).toBeLessThanOrEqual(headAnswered);
    const ended = await stale;
    if (ended !== 'reset' && ended.status === 204) expect(ended.offset).toBe(offset);

    // The client sends the rest to B from that offset; the entry is the data, byte for byte.
    const rest = await fetch(`${b}${location}`, {
      method: 'PATCH',
      headers: {
        'X-API-Key': ADMIN_KEY,
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': String(offset),
        'Content-Type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(data.subarray(offset)),
    });
    expect(rest.status, await rest.clone().text()).toBe(204);
    expect((await a.call('GET', v.entry('/resumed.bin'))).body).toMatchObject({ size_bytes: data.length, sha256: sha256(data) });
    // Every lock was let go.
    expect(await lockRows()).toBe(0);
  });

  it('a whole upload through tus-js-client on one replica is unchanged by the lock', async () => {
    const v = await uploadVolume(a, 'acme');
    const data = randomData(3 * MiB);
    const r = await tusUpload(`${replicaSet?.b.url}${v.volumeUrl}/uploads`, data, { metadata: { path: '/whole.bin' }, chunkSize: MiB });
    expect(r.error, JSON.stringify(r.body)).toBeNull();
    expect((await a.call('GET', v.entry('/whole.bin'))).body).toMatchObject({ size_bytes: data.length, sha256: sha256(data) });
  });

  it('termination on the other replica stops a running PATCH first, then removes every byte', async () => {
    const v = await uploadVolume(a, 'acme');
    const data = randomData(4 * MiB);
    const { location, stale, ended } = await stalledPatch(a, v, '/terminated.bin', data);
    expect(await lockRows()).toBe(1);
    const db = a.app.database.prisma;
    const session = await db.uploadSession.findUniqueOrThrow({ where: { id: location.split('/').pop() as string } });
    const { s3Bucket } = await db.workspace.findUniqueOrThrow({ where: { id: session.workspaceId } });
    // B's DELETE waits for A's PATCH to let go (before, it removed the bytes under the running PATCH,
    // whose writes could then leave bytes behind), and only then answers.
    const del = await fetch(`${replicaSet?.b.url}${location}`, {
      method: 'DELETE',
      headers: { 'X-API-Key': ADMIN_KEY, 'Tus-Resumable': '1.0.0' },
    });
    const answered = Date.now();
    expect(del.status, await del.clone().text()).toBe(204);
    expect(ended(), 'the PATCH had ended when B answered').toBeGreaterThan(0);
    expect(ended()).toBeLessThanOrEqual(answered);
    await stale;
    expect((await a.call('GET', location)).body).toMatchObject({ status: 'aborted', reserved_bytes: 0 });
    await expect(a.app.runtime.resumable.dataStore(s3Bucket).getUpload(session.storageId)).rejects.toBeDefined();
    expect(await lockRows()).toBe(0);
    // A second termination is a no-op, without waiting for any lock.
    expect(
      (await fetch(`${a.url}${location}`, { method: 'DELETE', headers: { 'X-API-Key': ADMIN_KEY, 'Tus-Resumable': '1.0.0' } })).status,
    ).toBe(204);
  });
});
