import { expect } from 'vitest';
import { type TestGateway, waitFor } from './app.js';
import type { TestVolume } from './entries.js';

type Res = { status: number; body: any; headers?: unknown };

export const locksUrl = (v: TestVolume) => `${v.volumeUrl}/locks`;

/**
 * The lock routes of the gateway `gw()` returns (a getter, so a test file can build these before
 * its beforeAll has started the gateway).
 */
export function lockRoutes(gw: () => TestGateway) {
  const acquire = (v: TestVolume, body: unknown, key?: string) => gw().call('POST', locksUrl(v), body, key);
  const renew = (v: TestVolume, body: unknown, key?: string) => gw().call('POST', `${locksUrl(v)}/renew`, body, key);
  const list = (v: TestVolume, key?: string) => gw().call('GET', locksUrl(v), undefined, key);
  /** DELETE …/locks/{partition}?lock_id= ; a path partition goes into the URL without its leading slash. */
  const release = (v: TestVolume, partition: string, lockId: string | undefined, key?: string) =>
    gw().call(
      'DELETE',
      `${locksUrl(v)}/${partition.replace(/^\//, '').split('/').map(encodeURIComponent).join('/')}${lockId === undefined ? '' : `?lock_id=${encodeURIComponent(lockId)}`}`,
      undefined,
      key,
    );

  /** Acquires and asserts 201; returns the lock JSON. */
  async function take(v: TestVolume, body: Record<string, unknown>, key?: string) {
    const res = await acquire(v, body, key);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body.lock;
  }
  /** Releases and asserts 200. */
  async function drop(v: TestVolume, lock: { partition: string; lock_id: string }, key?: string) {
    const res = await release(v, lock.partition, lock.lock_id, key);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }

  /** Live lock rows straight from SQL (not through the API under test). */
  async function liveRows(volumeId: string, partition: string): Promise<number> {
    const [row] = await gw().app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
      'SELECT count(*)::int AS n FROM locks WHERE volume_id = $1 AND partition = $2 AND released_at IS NULL AND expires_at > now()',
      volumeId,
      partition,
    );
    return row?.n ?? -1;
  }

  /** Waits (polling, no fixed sleep) until the lock's expiry has passed by the database's clock too. */
  async function waitUntilExpired(lock: { expires_at: string }) {
    await waitFor(async () => {
      const [row] = await gw().app.database.prisma.$queryRawUnsafe<{ past: boolean }[]>(
        'SELECT now() > $1::timestamptz AS past',
        lock.expires_at,
      );
      return row?.past && Date.now() > Date.parse(lock.expires_at);
    });
  }

  return { acquire, renew, list, release, take, drop, liveRows, waitUntilExpired };
}

export function expect422(res: Res, loc: (string | number)[], what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(422);
  expect(
    res.body.detail.map((d: { loc: unknown }) => d.loc),
    what,
  ).toContainEqual(loc);
}
/** A 409 for a taken lock, in the legacy envelope, naming the holder and its expiry. */
export function expectConflict(res: Res, holder: { holder_app_id: string; expires_at: string }, what = 'conflict') {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(409);
  expect(res.body, what).toMatchObject({
    error: 'CONFLICT',
    status_code: 409,
    details: { reason: 'locked', holder_app_id: holder.holder_app_id, expires_at: holder.expires_at },
  });
  expect(res.body.message, what).toContain(holder.holder_app_id);
  expect(res.body.message, what).toContain(holder.expires_at);
}
/** A write refused because a path lock guards it. */
export function expectLocked(res: Res, holder: { holder_app_id: string; partition: string }, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(409);
  expect(res.body, what).toMatchObject({
    error: 'LOCKED',
    status_code: 409,
    details: { holder_app_id: holder.holder_app_id, partition: holder.partition },
  });
  expect(res.body.message, what).toContain(holder.holder_app_id);
}
export function expectNotFound(res: Res, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(404);
  expect(res.body.error, what).toBe('RESOURCE_NOT_FOUND');
}
export function expectForbidden(res: Res, permission: string, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(403);
  expect(res.body, what).toMatchObject({ error: 'FORBIDDEN', status_code: 403, details: { required_permission: permission } });
}
