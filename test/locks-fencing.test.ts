import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { request } from './helpers/http.js';
import { expect422, expectLocked, lockRoutes } from './helpers/locks.js';
import { upload } from './helpers/uploads.js';

/**
 * What locks do to entry writes, over real HTTP on a real (PGlite) Postgres: fencing tokens refuse a
 * holder whose lease ran out, and exclusive path partitions guard the writes under them until they
 * are released or expire. The background sweeper is slowed down so expired locks stay in place.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
});
afterAll(async () => {
  await gw?.stop();
});

const { take, drop, waitUntilExpired } = lockRoutes(() => gw);

describe('REST: fencing tokens', () => {
  let v: TestVolume;
  beforeAll(async () => {
    v = await newVolume(gw, 'acme');
  });
  const put = (p: string, text: string, headers: Record<string, string>, key?: string) =>
    request(gw, 'PUT', v.entry(p), { body: { content_text: text }, headers, ...(key ? { key } : {}) });
  const fence = (lock: { fencing_token: number; partition: string }) => ({
    'x-fencing-token': String(lock.fencing_token),
    'x-lock-partition': lock.partition,
  });

  it('a holder whose lease ran out cannot write with its old token; its successor can', async () => {
    const a = await take(v, { partition: 'job-7', app_id: 'worker-a', ttl_seconds: 1 });
    const first = await put('/out/result.txt', 'from A (in time)', fence(a));
    expect(first.status, JSON.stringify(first.body)).toBe(201);

    await waitUntilExpired(a);
    const b = await take(v, { partition: 'job-7', app_id: 'worker-b' });
    expect(b.fencing_token).toBeGreaterThan(a.fencing_token);

    const stale = await put('/out/result.txt', 'from A (late)', fence(a));
    expect(stale.status, JSON.stringify(stale.body)).toBe(409);
    expect(stale.body).toMatchObject({
      error: 'CONFLICT',
      details: { reason: 'stale_fencing_token', partition: 'job-7', token: a.fencing_token, newest_token: b.fencing_token },
    });
    expect((await gw.call('GET', v.entry('/out/result.txt'))).body).toMatchObject({ content_text: 'from A (in time)', version: 1 });

    const fresh = await put('/out/result.txt', 'from B', fence(b));
    expect(fresh.status, JSON.stringify(fresh.body)).toBe(200);
    expect((await gw.call('GET', v.entry('/out/result.txt'))).body).toMatchObject({ content_text: 'from B', version: 2 });

    // The stale token is refused for deletes and moves as well.
    const del = await request(gw, 'DELETE', v.entry('/out/result.txt'), { headers: fence(a) });
    expect(del.status, JSON.stringify(del.body)).toBe(409);
    expect(del.body.details.reason).toBe('stale_fencing_token');
    const mv = await request(gw, 'POST', v.move, { body: { from: '/out/result.txt', to: '/out/moved.txt' }, headers: fence(a) });
    expect(mv.status, JSON.stringify(mv.body)).toBe(409);
    expect(mv.body.details.reason).toBe('stale_fencing_token');
    expect((await gw.call('GET', v.entry('/out/result.txt'))).body.content_text).toBe('from B');
    await drop(v, b);
  });

  it('path partitions: the stale token is refused before the lock check', async () => {
    const a = await take(v, { partition: '/fenced/', app_id: 'worker-a', ttl_seconds: 1 });
    const ok = await put('/fenced/x.txt', 'a', { ...fence(a), 'x-lock-id': a.lock_id });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    await waitUntilExpired(a);
    const b = await take(v, { partition: '/fenced/', app_id: 'worker-b' });
    // The header may name the partition without the trailing slash.
    const stale = await put('/fenced/x.txt', 'a late', { 'x-fencing-token': String(a.fencing_token), 'x-lock-partition': '/fenced' });
    expect(stale.status, JSON.stringify(stale.body)).toBe(409);
    expect(stale.body.details).toMatchObject({ reason: 'stale_fencing_token', newest_token: b.fencing_token });
    const fresh = await put('/fenced/x.txt', 'b', { ...fence(b), 'x-lock-id': b.lock_id });
    expect(fresh.status, JSON.stringify(fresh.body)).toBe(200);
    await drop(v, b);
  });

  it('a token for a partition that never issued one is refused; bad headers are 422', async () => {
    const never = await put('/out/n.txt', 'x', { 'x-fencing-token': '1', 'x-lock-partition': 'never-locked' });
    expect(never.status, JSON.stringify(never.body)).toBe(409);
    expect(never.body.details.reason).toBe('stale_fencing_token');
    expect422(await put('/out/n.txt', 'x', { 'x-fencing-token': '1' }), ['header', 'x-lock-partition'], 'token without partition');
    expect422(await put('/out/n.txt', 'x', { 'x-lock-partition': 'p' }), ['header', 'x-fencing-token'], 'partition without token');
    expect422(
      await put('/out/n.txt', 'x', { 'x-fencing-token': 'abc', 'x-lock-partition': 'p' }),
      ['header', 'x-fencing-token'],
      'non-numeric token',
    );
    expect422(
      await put('/out/n.txt', 'x', { 'x-fencing-token': '1', 'x-lock-partition': '/a/../b' }),
      ['header', 'x-lock-partition'],
      'bad path partition',
    );
    expect((await gw.call('GET', v.entry('/out/n.txt'))).status).toBe(404);
  });
});

/** Every file under the local blob store's root. */
async function blobFiles(): Promise<string[]> {
  const root = path.join(gw.dataDir, 'blobs');
  const entries = await fs.readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

describe('REST: path partitions guard entry writes', () => {
  let v: TestVolume;
  let holderKey: string;
  let otherKey: string;
  beforeAll(async () => {
    v = await newVolume(gw, 'acme');
    const scopes = ['entries:read', 'entries:write', 'locks:write', 'volumes:read'];
    holderKey = await createKey(gw, 'acme', scopes, 'holder');
    otherKey = await createKey(gw, 'acme', scopes, 'other');
    for (const app of ['holder', 'other']) {
      expect((await gw.call('POST', v.mounts, { app_id: app, path_pattern: '/**', access_level: 'write' })).status).toBe(201);
    }
    await putText(gw, v, '/reports/existing.md', 'existing');
    await putText(gw, v, '/other/src.md', 'source');
  });

  it("an exclusive lock on /reports/ refuses everyone else's PUT, upload, DELETE and move under it", async () => {
    const lock = await take(v, { partition: '/reports/', app_id: 'holder' }, holderKey);
    const blobsBefore = await blobFiles();

    expectLocked(await request(gw, 'PUT', v.entry('/reports/q1.md'), { body: { content_text: 'x' }, key: otherKey }), lock, 'PUT');
    expectLocked(
      await request(gw, 'PUT', v.entry('/reports/deep/er/q1.md'), { body: { content_text: 'x' }, key: otherKey }),
      lock,
      'PUT deep',
    );
    expectLocked(
      await request(gw, 'PUT', v.entry('/reports/existing.md'), { body: { content_text: 'x' }, key: otherKey }),
      lock,
      'PUT replace',
    );
    expectLocked(
      await upload(gw, `${v.entry('/reports/file.bin')}/upload`, { data: Buffer.from('bytes') }, {}, { key: otherKey }),
      lock,
      'upload',
    );
    expectLocked(await request(gw, 'DELETE', v.entry('/reports/existing.md'), { key: otherKey }), lock, 'DELETE');
    expectLocked(
      await request(gw, 'POST', v.move, { body: { from: '/other/src.md', to: '/reports/src.md' }, key: otherKey }),
      lock,
      'move in',
    );
    expectLocked(
      await request(gw, 'POST', v.move, { body: { from: '/reports/existing.md', to: '/other/out.md' }, key: otherKey }),
      lock,
      'move out',
    );
    // Not even the holder's own app without the lock id, nor the platform key.
    expectLocked(
      await request(gw, 'PUT', v.entry('/reports/q1.md'), { body: { content_text: 'x' }, key: holderKey }),
      lock,
      'holder w/o id',
    );
    expectLocked(await request(gw, 'PUT', v.entry('/reports/q1.md'), { body: { content_text: 'x' } }), lock, 'admin');
    // A wrong lock id does not help.
    expectLocked(
      await request(gw, 'PUT', v.entry('/reports/q1.md'), {
        body: { content_text: 'x' },
        key: otherKey,
        headers: { 'x-lock-id': '00000000-0000-4000-8000-000000000000' },
      }),
      lock,
      'wrong lock id',
    );

    // Nothing of the refused writes is left: no rows, no objects, the existing entry untouched.
    expect((await gw.call('GET', v.entry('/reports/q1.md'))).status).toBe(404);
    expect((await gw.call('GET', v.entry('/reports/file.bin'))).status).toBe(404);
    expect((await gw.call('GET', v.entry('/reports/src.md'))).status).toBe(404);
    expect((await gw.call('GET', v.entry('/reports/existing.md'))).body).toMatchObject({ content_text: 'existing', version: 1 });
    expect((await gw.call('GET', v.entry('/other/src.md'))).status).toBe(200);
    expect(await blobFiles()).toEqual(blobsBefore);

    // Outside the partition: free (/reports-2024/, /other/). /reports itself is covered: see locks-access.test.ts.
    expect((await request(gw, 'PUT', v.entry('/other/free.md'), { body: { content_text: 'x' }, key: otherKey })).status).toBe(201);
    expect((await request(gw, 'PUT', v.entry('/reports-2024/a.md'), { body: { content_text: 'x' }, key: otherKey })).status).toBe(201);
    expect((await upload(gw, `${v.entry('/other/file.bin')}/upload`, { data: Buffer.from('bytes') }, {}, { key: otherKey })).status).toBe(
      201,
    );
    expect((await request(gw, 'DELETE', v.entry('/other/free.md'), { key: otherKey })).status).toBe(200);

    // The holder presenting X-Lock-Id writes, uploads, moves and deletes.
    const withId = { key: holderKey, headers: { 'x-lock-id': lock.lock_id } };
    const put = await request(gw, 'PUT', v.entry('/reports/q1.md'), { body: { content_text: 'by holder' }, ...withId });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    expect(put.body.entry.written_by_app_id).toBe('holder');
    expect(
      (
        await upload(
          gw,
          `${v.entry('/reports/file.bin')}/upload`,
          { data: Buffer.from('bytes') },
          {},
          { key: holderKey, headers: { 'x-lock-id': lock.lock_id } },
        )
      ).status,
    ).toBe(201);
    const mv = await request(gw, 'POST', v.move, { body: { from: '/other/src.md', to: '/reports/src.md' }, ...withId });
    expect(mv.status, JSON.stringify(mv.body)).toBe(200);
    expect((await request(gw, 'DELETE', v.entry('/reports/existing.md'), withId)).status).toBe(200);

    // Released: the other app writes again.
    await drop(v, lock, holderKey);
    expect((await request(gw, 'PUT', v.entry('/reports/q2.md'), { body: { content_text: 'x' }, key: otherKey })).status).toBe(201);
  });

  it('an expired path lock stops guarding', async () => {
    const lock = await take(v, { partition: '/expiring/', app_id: 'holder', ttl_seconds: 1 }, holderKey);
    expectLocked(await request(gw, 'PUT', v.entry('/expiring/a.md'), { body: { content_text: 'x' }, key: otherKey }), lock, 'live');
    await waitFor(async () => {
      const res = await request(gw, 'PUT', v.entry('/expiring/a.md'), { body: { content_text: 'x' }, key: otherKey });
      if (res.status === 201) return true;
      expectLocked(res, lock, 'until it expires');
      return false;
    });
  });

  it('shared path locks and free-form partitions do not block writes', async () => {
    const shared = await take(v, { partition: '/shared/', app_id: 'holder', lock_type: 'shared' }, holderKey);
    expect((await request(gw, 'PUT', v.entry('/shared/a.md'), { body: { content_text: 'x' }, key: otherKey })).status).toBe(201);
    const free = await take(v, { partition: 'reports', app_id: 'holder' }, holderKey);
    expect((await request(gw, 'PUT', v.entry('/reports/free.md'), { body: { content_text: 'x' }, key: otherKey })).status).toBe(201);
    expect((await request(gw, 'DELETE', v.entry('/reports/free.md'), { key: otherKey })).status).toBe(200);
    await drop(v, shared, holderKey);
    await drop(v, free, holderKey);
  });
});
