import fs from 'node:fs/promises';
import path from 'node:path';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { sweepLocks } from '../src/domain/locks/locks.js';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, putText, request, type TestVolume } from './helpers/entries.js';

/**
 * Locks end to end over real HTTP on a real (PGlite) Postgres: the legacy REST shapes, validation,
 * exactly-one-winner under contention, expiry, shared/exclusive and prefix overlap, renewal,
 * release, fencing tokens, path partitions guarding entry writes, app-key rules, GraphQL and the
 * lockEvents subscription. The background sweeper is slowed down so expired locks stay in place
 * until a test sweeps them itself.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
});
afterAll(async () => {
  await gw?.stop();
});

type Res = { status: number; body: any; headers?: unknown };

const LOCK_KEYS = [
  'acquired_at',
  'expires_at',
  'fencing_token',
  'holder_app_id',
  'holder_execution_id',
  'lock_id',
  'lock_type',
  'partition',
  'volume_id',
].sort();
const locksUrl = (v: TestVolume) => `${v.volumeUrl}/locks`;
const acquire = (v: TestVolume, body: unknown, key?: string) => gw.call('POST', locksUrl(v), body, key);
const renew = (v: TestVolume, body: unknown, key?: string) => gw.call('POST', `${locksUrl(v)}/renew`, body, key);
const list = (v: TestVolume, key?: string) => gw.call('GET', locksUrl(v), undefined, key);
/** DELETE …/locks/{partition}?lock_id= ; a path partition goes into the URL without its leading slash. */
const release = (v: TestVolume, partition: string, lockId: string | undefined, key?: string) =>
  gw.call(
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
async function drop(v: TestVolume, lock: { partition: string; lock_id: string }, key?: string) {
  const res = await release(v, lock.partition, lock.lock_id, key);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

function expect422(res: Res, loc: (string | number)[], what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(422);
  expect(
    res.body.detail.map((d: { loc: unknown }) => d.loc),
    what,
  ).toContainEqual(loc);
}
function expectConflict(res: Res, holder: { holder_app_id: string; expires_at: string }, what = 'conflict') {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(409);
  expect(res.body, what).toMatchObject({
    error: 'CONFLICT',
    status_code: 409,
    details: { reason: 'locked', holder_app_id: holder.holder_app_id, expires_at: holder.expires_at },
  });
  expect(res.body.message, what).toContain(holder.holder_app_id);
  expect(res.body.message, what).toContain(holder.expires_at);
}
function expectLocked(res: Res, holder: { holder_app_id: string; partition: string }, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(409);
  expect(res.body, what).toMatchObject({
    error: 'LOCKED',
    status_code: 409,
    details: { holder_app_id: holder.holder_app_id, partition: holder.partition },
  });
  expect(res.body.message, what).toContain(holder.holder_app_id);
}
function expectNotFound(res: Res, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(404);
  expect(res.body.error, what).toBe('RESOURCE_NOT_FOUND');
}
function expectForbidden(res: Res, permission: string, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(403);
  expect(res.body, what).toMatchObject({ error: 'FORBIDDEN', status_code: 403, details: { required_permission: permission } });
}

/** Live lock rows straight from SQL (not through the API under test). */
async function liveRows(volumeId: string, partition: string): Promise<number> {
  const [row] = await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
    'SELECT count(*)::int AS n FROM locks WHERE volume_id = $1 AND partition = $2 AND released_at IS NULL AND expires_at > now()',
    volumeId,
    partition,
  );
  return row?.n ?? -1;
}

/** Waits (polling, no fixed sleep) until the lock's expiry has passed by the database's clock too. */
async function waitUntilExpired(lock: { expires_at: string }) {
  await waitFor(async () => {
    const [row] = await gw.app.database.prisma.$queryRawUnsafe<{ past: boolean }[]>(
      'SELECT now() > $1::timestamptz AS past',
      lock.expires_at,
    );
    return row?.past && Date.now() > Date.parse(lock.expires_at);
  });
}

describe('REST: reference shapes', () => {
  let v: TestVolume;
  beforeAll(async () => {
    v = await newVolume(gw, 'acme');
  });

  it('acquire → 201 {message, lock}, list → {locks}, release → {message}', async () => {
    const before = Date.now();
    const res = await acquire(v, { partition: 'jobs', app_id: 'indexer' });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body).sort()).toEqual(['lock', 'message']);
    expect(res.body.message).toBe('Lock acquired successfully');
    const lock = res.body.lock;
    expect(Object.keys(lock).sort()).toEqual(LOCK_KEYS);
    expect(lock).toMatchObject({
      volume_id: v.volumeId,
      partition: 'jobs',
      lock_type: 'exclusive',
      holder_app_id: 'indexer',
      holder_execution_id: null,
      fencing_token: 1,
    });
    expect(typeof lock.lock_id).toBe('string');
    // Default ttl_seconds is 60.
    const acquiredAt = Date.parse(lock.acquired_at);
    const expiresAt = Date.parse(lock.expires_at);
    expect(acquiredAt).toBeGreaterThanOrEqual(before - 2000);
    expect(expiresAt - acquiredAt).toBeGreaterThanOrEqual(59_000);
    expect(expiresAt - acquiredAt).toBeLessThanOrEqual(61_000);

    const withExec = await take(v, {
      partition: 'other',
      app_id: 'indexer',
      execution_id: 'run-7',
      lock_type: 'shared',
      ttl_seconds: 3600,
    });
    expect(withExec).toMatchObject({ holder_execution_id: 'run-7', lock_type: 'shared', partition: 'other', fencing_token: 1 });
    expect(Date.parse(withExec.expires_at) - Date.parse(withExec.acquired_at)).toBeGreaterThanOrEqual(3599_000);

    const listed = await list(v);
    expect(listed.status).toBe(200);
    expect(Object.keys(listed.body)).toEqual(['locks']);
    expect(listed.body.locks).toEqual([lock, withExec]);

    const rel = await release(v, 'jobs', lock.lock_id);
    expect(rel.status).toBe(200);
    expect(rel.body).toEqual({ message: 'Lock released successfully' });
    expect((await list(v)).body.locks).toEqual([withExec]);
    await drop(v, withExec);
    expect((await list(v)).body).toEqual({ locks: [] });
  });

  it('a 409 uses the legacy envelope and names the holder and expiry', async () => {
    const held = await take(v, { partition: 'env', app_id: 'a1', execution_id: 'e1' });
    const res = await acquire(v, { partition: 'env', app_id: 'a2' });
    expect(Object.keys(res.body).sort()).toEqual(['details', 'error', 'message', 'status_code', 'timestamp']);
    expectConflict(res, held);
    expect(res.body.details).toMatchObject({ partition: 'env', lock_type: 'exclusive', holder_execution_id: 'e1' });
    expect(res.body.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    await drop(v, held);
  });

  it('path partitions are normalised to directories; the release URL may carry them either way', async () => {
    const a = await take(v, { partition: '/reports', app_id: 'a' });
    expect(a.partition).toBe('/reports/');
    await drop(v, a); // URL: …/locks/reports/
    const b = await take(v, { partition: '/deep/er/', app_id: 'a' });
    expect(b.partition).toBe('/deep/er/');
    const noSlash = await gw.call('DELETE', `${locksUrl(v)}/deep/er?lock_id=${b.lock_id}`);
    expect(noSlash.status, JSON.stringify(noSlash.body)).toBe(200);
    // Free-form names travel percent-encoded, slashes and all.
    for (const name of ['team a/ü', 'x?y#z', '100%']) {
      const lock = await take(v, { partition: name, app_id: 'a' });
      expect(lock.partition).toBe(name);
      await drop(v, lock);
    }
    // The partition in the URL must be the lock's.
    const c = await take(v, { partition: 'mine', app_id: 'a' });
    expectNotFound(await release(v, 'not-mine', c.lock_id), 'release under another partition');
    await drop(v, c);
  });
});

describe('REST: validation (422 naming the field, nothing taken)', () => {
  let v: TestVolume;
  beforeAll(async () => {
    v = await newVolume(gw, 'acme');
  });

  it('acquire', async () => {
    expect422(await acquire(v, { app_id: 'a' }), ['body', 'partition'], 'missing partition');
    expect422(await acquire(v, { partition: 'p' }), ['body', 'app_id'], 'missing app_id');
    expect422(await acquire(v, { partition: '', app_id: 'a' }), ['body', 'partition'], 'empty partition');
    expect422(await acquire(v, { partition: 'p', app_id: 'a', ttl_seconds: 0 }), ['body', 'ttl_seconds'], 'ttl 0');
    expect422(await acquire(v, { partition: 'p', app_id: 'a', ttl_seconds: 3601 }), ['body', 'ttl_seconds'], 'ttl 3601');
    expect422(await acquire(v, { partition: 'p', app_id: 'a', ttl_seconds: 1.5 }), ['body', 'ttl_seconds'], 'ttl 1.5');
    expect422(await acquire(v, { partition: 'p', app_id: 'a', ttl_seconds: '60' }), ['body', 'ttl_seconds'], 'ttl string');
    expect422(await acquire(v, { partition: 'p', app_id: 'a', lock_type: 'mutex' }), ['body', 'lock_type'], 'unknown lock_type');
    expect422(await acquire(v, { partition: 'p\u0001q', app_id: 'a' }), ['body', 'partition'], 'control char');
    expect422(await acquire(v, { partition: 'p\u007f', app_id: 'a' }), ['body', 'partition'], 'DEL char');
    expect422(await acquire(v, { partition: '/a/\u0000/b', app_id: 'a' }), ['body', 'partition'], 'NUL in path partition');
    expect422(await acquire(v, { partition: '/a/../b', app_id: 'a' }), ['body', 'partition'], 'dot-dot path partition');
    expect422(await acquire(v, { partition: 'p', app_id: 'has space' }), ['body', 'app_id'], 'app_id with whitespace');
    expect422(await acquire(v, 'not json'), ['body'], 'malformed JSON');
    expect((await list(v)).body.locks).toEqual([]);
    const [row] = await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
      'SELECT count(*)::int AS n FROM fencing_counters WHERE volume_id = $1',
      v.volumeId,
    );
    expect(row?.n, 'no fencing token was issued for a refused request').toBe(0);
  });

  it('renew and release', async () => {
    const lock = await take(v, { partition: 'p', app_id: 'a' });
    expect422(await renew(v, {}), ['body', 'lock_id'], 'renew without lock_id');
    expect422(await renew(v, { lock_id: lock.lock_id, ttl_seconds: 0 }), ['body', 'ttl_seconds'], 'renew ttl 0');
    expect422(await renew(v, { lock_id: lock.lock_id, ttl_seconds: 3601 }), ['body', 'ttl_seconds'], 'renew ttl 3601');
    expect422(await release(v, 'p', undefined), ['query', 'lock_id'], 'release without lock_id');
    expect422(await release(v, 'p', ''), ['query', 'lock_id'], 'release with empty lock_id');
    // None of it touched the lock.
    expect((await list(v)).body.locks).toEqual([lock]);
    await drop(v, lock);
  });
});

describe('REST: contention and lifetimes', () => {
  let v: TestVolume;
  beforeAll(async () => {
    v = await newVolume(gw, 'acme');
  });

  it('50 concurrent exclusive acquirers: exactly one 201, 49 × 409 naming the holder and expiry', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => acquire(v, { partition: 'hot', app_id: `app-${i}` })));
    const statuses = results.map((r) => r.status);
    expect(
      statuses.filter((s) => s === 201),
      JSON.stringify(statuses),
    ).toHaveLength(1);
    expect(
      statuses.filter((s) => s === 409),
      JSON.stringify(statuses),
    ).toHaveLength(49);
    const winner = results.find((r) => r.status === 201)!.body.lock;
    for (const loser of results.filter((r) => r.status === 409)) expectConflict(loser, winner, 'loser');
    expect(await liveRows(v.volumeId, 'hot')).toBe(1);
    expect((await list(v)).body.locks).toEqual([winner]);

    // Released: the next acquirer wins, with the next fencing token.
    await drop(v, winner);
    const next = await take(v, { partition: 'hot', app_id: 'app-late' });
    expect(next.fencing_token).toBeGreaterThan(winner.fencing_token);
    await drop(v, next);
  });

  it('an expired lock never blocks: the next acquirer wins once it has run out', async () => {
    const short = await take(v, { partition: 'lease', app_id: 'slow', ttl_seconds: 1 });
    expectConflict(await acquire(v, { partition: 'lease', app_id: 'eager' }), short, 'while live');
    const winner = await waitFor(async () => {
      const res = await acquire(v, { partition: 'lease', app_id: 'eager' });
      if (res.status === 201) return res.body.lock;
      expectConflict(res, short, 'before expiry');
      return undefined;
    });
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(short.expires_at));
    expect(winner).toMatchObject({ holder_app_id: 'eager', partition: 'lease' });
    expect(winner.fencing_token).toBeGreaterThan(short.fencing_token);
    expect((await list(v)).body.locks.map((l: { lock_id: string }) => l.lock_id)).toEqual([winner.lock_id]);
    await drop(v, winner);
  });

  it('shared/exclusive compatibility', async () => {
    const s1 = await take(v, { partition: 'm', app_id: 'r1', lock_type: 'shared' });
    const s2 = await take(v, { partition: 'm', app_id: 'r2', lock_type: 'shared' });
    expect(s2.fencing_token).toBeGreaterThan(s1.fencing_token);
    const blocked = await acquire(v, { partition: 'm', app_id: 'w' });
    expect(blocked.status).toBe(409);
    expect(['r1', 'r2']).toContain(blocked.body.details.holder_app_id);
    expect(blocked.body.details.lock_type).toBe('shared');
    await drop(v, s1);
    expectConflict(await acquire(v, { partition: 'm', app_id: 'w' }), s2, 'one shared holder left');
    await drop(v, s2);

    const x = await take(v, { partition: 'm', app_id: 'w' });
    expectConflict(await acquire(v, { partition: 'm', app_id: 'r3', lock_type: 'shared' }), x, 'exclusive blocks shared');
    expectConflict(await acquire(v, { partition: 'm', app_id: 'w' }), x, 'exclusive blocks its own app again');
    await drop(v, x);
    await drop(v, await take(v, { partition: 'm', app_id: 'r3', lock_type: 'shared' }));
  });

  it('overlapping path partitions conflict, disjoint ones and free-form names do not', async () => {
    const a = await take(v, { partition: '/a/', app_id: 'p1' });
    expectConflict(await acquire(v, { partition: '/a/b/', app_id: 'p2' }), a, '/a/b/ under /a/');
    expectConflict(await acquire(v, { partition: '/a/b/', app_id: 'p2', lock_type: 'shared' }), a, 'shared /a/b/ under /a/');
    expectConflict(await acquire(v, { partition: '/a', app_id: 'p2' }), a, '/a (normalised) on /a/');
    const ab = await take(v, { partition: '/ab/', app_id: 'p2' });
    const freeForm = await take(v, { partition: 'a', app_id: 'p2' });
    const root = await acquire(v, { partition: '/', app_id: 'p3' });
    expect(root.status, 'the root overlaps every path partition').toBe(409);
    await drop(v, a);

    // The other direction: a lock deep down blocks its ancestors.
    const deep = await take(v, { partition: '/x/y/z/', app_id: 'p1' });
    expectConflict(await acquire(v, { partition: '/x/', app_id: 'p2' }), deep, '/x/ over /x/y/z/');
    expectConflict(await acquire(v, { partition: '/x/y/z/w/', app_id: 'p2' }), deep, 'below');
    const sibling = await take(v, { partition: '/x/y/zz/', app_id: 'p2' });

    // Overlapping shared locks are compatible.
    const s1 = await take(v, { partition: '/s/', app_id: 'p1', lock_type: 'shared' });
    const s2 = await take(v, { partition: '/s/t/', app_id: 'p2', lock_type: 'shared' });
    expectConflict(await acquire(v, { partition: '/s/t/u/', app_id: 'p3' }), s2, 'exclusive under shared ones');
    for (const l of [ab, freeForm, deep, sibling, s1, s2]) await drop(v, l);
    expect((await list(v)).body.locks).toEqual([]);
  });

  it('concurrent acquirers of overlapping path partitions: exactly one wins', async () => {
    const parts = ['/race/', '/race/a/', '/race/a/b/', '/race/c/', '/race/a/b/c/'];
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => acquire(v, { partition: parts[i % parts.length], app_id: `r${i}` })),
    );
    const won = results.filter((r) => r.status === 201).map((r) => r.body.lock);
    expect(results.every((r) => r.status === 201 || r.status === 409)).toBe(true);
    // Several may win only if their partitions are pairwise disjoint.
    for (const x of won) {
      for (const y of won) {
        if (x !== y) expect(x.partition.startsWith(y.partition), `${x.partition} vs ${y.partition}`).toBe(false);
      }
    }
    expect(won.length).toBeGreaterThanOrEqual(1);
    for (const l of won) await drop(v, l);
  });

  it('renew keeps lock_id and fencing_token and extends expires_at', async () => {
    const lock = await take(v, { partition: 'renewable', app_id: 'r', ttl_seconds: 5 });
    const res = await renew(v, { lock_id: lock.lock_id, ttl_seconds: 600 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.message).toBe('Lock renewed successfully');
    expect(res.body.lock).toMatchObject({
      lock_id: lock.lock_id,
      fencing_token: lock.fencing_token,
      partition: 'renewable',
      acquired_at: lock.acquired_at,
      holder_app_id: 'r',
    });
    expect(Date.parse(res.body.lock.expires_at)).toBeGreaterThan(Date.parse(lock.expires_at) + 590_000);
    // Default ttl on renew is 60 s from now (shorter than what it had: renew sets, not adds).
    const again = await renew(v, { lock_id: lock.lock_id });
    const remaining = Date.parse(again.body.lock.expires_at) - Date.now();
    expect(remaining).toBeGreaterThan(50_000);
    expect(remaining).toBeLessThanOrEqual(61_000);
    expect((await list(v)).body.locks).toEqual([again.body.lock]);
    await drop(v, lock);
    expectNotFound(await renew(v, { lock_id: lock.lock_id }), 'renew a released lock');
    expectNotFound(await renew(v, { lock_id: '00000000-0000-4000-8000-000000000000' }), 'renew unknown');
    expectNotFound(await renew(v, { lock_id: 'garbage' }), 'renew garbage');
  });

  it('an expired lock cannot be renewed (409) and does not come back', async () => {
    const lock = await take(v, { partition: 'lapsed', app_id: 'r', ttl_seconds: 1 });
    await waitUntilExpired(lock);
    const res = await renew(v, { lock_id: lock.lock_id, ttl_seconds: 60 });
    expect(res.status, JSON.stringify(res.body)).toBe(409);
    expect(res.body).toMatchObject({ error: 'CONFLICT', details: { reason: 'expired', lock_id: lock.lock_id } });
    expect((await list(v)).body.locks).toEqual([]);
    await drop(v, await take(v, { partition: 'lapsed', app_id: 'other' }));
  });

  it('release: unknown or garbage id → 404, twice → 404, another app → 403', async () => {
    expectNotFound(await release(v, 'x', '00000000-0000-4000-8000-000000000000'), 'unknown id');
    expectNotFound(await release(v, 'x', 'garbage'), 'garbage id');
    expectNotFound(await release(v, 'x', 'a'.repeat(64)), 'long garbage id');
    const lock = await take(v, { partition: 'x', app_id: 'owner' });
    await drop(v, lock);
    expectNotFound(await release(v, 'x', lock.lock_id), 'second release');

    const owner = await createKey(gw, 'acme', ['locks:write', 'volumes:read'], 'owner');
    const intruder = await createKey(gw, 'acme', ['locks:write', 'volumes:read'], 'intruder');
    for (const app of ['owner', 'intruder']) {
      expect((await gw.call('POST', v.mounts, { app_id: app, path_pattern: '/**', access_level: 'write' })).status).toBe(201);
    }
    const held = await take(v, { partition: 'x', app_id: 'owner' }, owner);
    expectForbidden(await release(v, 'x', held.lock_id, intruder), 'locks:write', 'another app releases');
    expectForbidden(await renew(v, { lock_id: held.lock_id }, intruder), 'locks:write', 'another app renews');
    expect((await list(v)).body.locks).toEqual([held]);
    await drop(v, held, owner);
    // An org key (not an app key) with locks:write may release any app's lock, e.g. to clean up.
    const orgKey = await createKey(gw, 'acme', ['locks:write', 'volumes:read']);
    const held2 = await take(v, { partition: 'x', app_id: 'owner' }, owner);
    await drop(v, held2, orgKey);
  });

  it('the list shows live locks only', async () => {
    const released = await take(v, { partition: 'l1', app_id: 'a' });
    await drop(v, released);
    const short = await take(v, { partition: 'l2', app_id: 'a', ttl_seconds: 1 });
    const live = await take(v, { partition: 'l3', app_id: 'a', ttl_seconds: 600 });
    expect((await list(v)).body.locks.map((l: { lock_id: string }) => l.lock_id)).toEqual([short.lock_id, live.lock_id]);
    await waitFor(async () => (await list(v)).body.locks.length === 1);
    expect((await list(v)).body.locks).toEqual([live]);
    // Releasing an expired lock succeeds (its holder is done either way); it stays unlisted.
    await drop(v, short);
    await drop(v, live);
    expect((await list(v)).body.locks).toEqual([]);
  });
});

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

function upload(v: TestVolume, p: string, data: string, key: string, headers: Record<string, string> = {}) {
  const form = new FormData();
  form.append('file', new Blob([Buffer.from(data)]), path.basename(p));
  return fetch(`${gw.url}${v.entry(p)}/upload`, {
    method: 'POST',
    body: form,
    headers: { authorization: `Bearer ${key}`, ...headers },
  }).then(async (res) => ({ status: res.status, body: await res.json() }));
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
    expectLocked(await upload(v, '/reports/file.bin', 'bytes', otherKey), lock, 'upload');
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
    expect((await upload(v, '/other/file.bin', 'bytes', otherKey)).status).toBe(201);
    expect((await request(gw, 'DELETE', v.entry('/other/free.md'), { key: otherKey })).status).toBe(200);

    // The holder presenting X-Lock-Id writes, uploads, moves and deletes.
    const withId = { key: holderKey, headers: { 'x-lock-id': lock.lock_id } };
    const put = await request(gw, 'PUT', v.entry('/reports/q1.md'), { body: { content_text: 'by holder' }, ...withId });
    expect(put.status, JSON.stringify(put.body)).toBe(201);
    expect(put.body.entry.written_by_app_id).toBe('holder');
    expect((await upload(v, '/reports/file.bin', 'bytes', holderKey, { 'x-lock-id': lock.lock_id })).status).toBe(201);
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

describe('REST: app keys, scopes and organisations', () => {
  let v: TestVolume;
  beforeAll(async () => {
    v = await newVolume(gw, 'acme');
    expect((await gw.call('POST', v.mounts, { app_id: 'bot', path_pattern: '/work/**', access_level: 'write' })).status).toBe(201);
    expect((await gw.call('POST', v.mounts, { app_id: 'bot', path_pattern: '/docs/**', access_level: 'read' })).status).toBe(201);
  });

  it('an app key locks only as its own app and needs locks:write', async () => {
    const bot = await createKey(gw, 'acme', ['locks:write', 'volumes:read'], 'bot');
    const res = await acquire(v, { partition: 'j', app_id: 'someone-else' }, bot);
    expectForbidden(res, 'locks:write', 'acquire as another app');
    expect(res.body.details.field).toBe('body.app_id');
    const own = await take(v, { partition: 'j', app_id: 'bot' }, bot);
    expect(own.holder_app_id).toBe('bot');

    const noScope = await createKey(gw, 'acme', ['volumes:read', 'entries:write'], 'bot');
    expectForbidden(await acquire(v, { partition: 'k', app_id: 'bot' }, noScope), 'locks:write', 'acquire without locks:write');
    expectForbidden(await renew(v, { lock_id: own.lock_id }, noScope), 'locks:write', 'renew without locks:write');
    expectForbidden(await release(v, 'j', own.lock_id, noScope), 'locks:write', 'release without locks:write');
    const orgNoScope = await createKey(gw, 'acme', ['volumes:read']);
    expectForbidden(await acquire(v, { partition: 'k', app_id: 'x' }, orgNoScope), 'locks:write', 'org key without locks:write');
    // Listing needs volumes:read only.
    const lister = await createKey(gw, 'acme', ['volumes:read']);
    expect((await list(v, lister)).body.locks).toEqual([own]);
    expectForbidden(await list(v, await createKey(gw, 'acme', ['locks:write'])), 'volumes:read', 'list without volumes:read');
    await drop(v, own, bot);
    expect((await gw.call('GET', locksUrl(v), undefined, null)).status).toBe(401);
  });

  it('a path partition needs a write mount covering it', async () => {
    const bot = await createKey(gw, 'acme', ['locks:write', 'volumes:read'], 'bot');
    const work = await take(v, { partition: '/work/', app_id: 'bot' }, bot);
    expectConflict(await acquire(v, { partition: '/work/deeper/', app_id: 'bot' }, bot), work, 'overlapping its own lock');
    expectForbidden(await acquire(v, { partition: '/docs/', app_id: 'bot' }, bot), 'path:write', 'read mount only');
    expectForbidden(await acquire(v, { partition: '/docs/sub/', app_id: 'bot' }, bot), 'path:write', 'read mount only, deeper');
    expectNotFound(await acquire(v, { partition: '/secret/', app_id: 'bot' }, bot), 'no mount at all');
    // The root is not readable for an app mounted on /work/** and /docs/** only: it does not exist for it.
    expectNotFound(await acquire(v, { partition: '/', app_id: 'bot' }, bot), 'the root is not covered');
    // Free-form partitions are advisory: any app that sees the volume may take them.
    await drop(v, await take(v, { partition: 'docs', app_id: 'bot' }, bot), bot);
    await drop(v, work, bot);
  });

  it('an unmounted app and another organisation get 404', async () => {
    const held = await take(v, { partition: 'z', app_id: 'admin-app' });
    const stranger = await createKey(gw, 'acme', ['locks:write', 'volumes:read'], 'stranger');
    expectNotFound(await acquire(v, { partition: 'z2', app_id: 'stranger' }, stranger), 'unmounted app acquires');
    expectNotFound(await list(v, stranger), 'unmounted app lists');

    const foreign = await createKey(gw, 'globex', ['locks:write', 'volumes:read', 'admin']);
    expectNotFound(await acquire(v, { partition: 'z2', app_id: 'x' }, foreign), 'another org acquires');
    expectNotFound(await list(v, foreign), 'another org lists');
    expectNotFound(await renew(v, { lock_id: held.lock_id }, foreign), 'another org renews');
    expectNotFound(await release(v, 'z', held.lock_id, foreign), 'another org releases');
    // The volume addressed under another org's (or workspace's) URL does not exist either.
    const wrongOrg = await gw.call('POST', `/v1/orgs/globex/workspaces/${v.workspaceId}/volumes/${v.volumeId}/locks`, {
      partition: 'z2',
      app_id: 'x',
    });
    expectNotFound(wrongOrg, 'admin key, wrong org in URL');
    const other = await newVolume(gw, 'acme');
    expectNotFound(await release(other, 'z', held.lock_id), "another volume's lock id");
    const wrongWorkspace = await gw.call('GET', `/v1/orgs/acme/workspaces/${other.workspaceId}/volumes/${v.volumeId}/locks`);
    expectNotFound(wrongWorkspace, 'the volume under another workspace of the org');
    expect((await list(v)).body.locks).toEqual([held]);
    await drop(v, held);
  });
});

const codeOf = (body: any) => body.errors?.[0]?.extensions?.code;

describe('GraphQL', () => {
  let v: TestVolume;
  beforeAll(async () => {
    v = await newVolume(gw, 'acme');
  });
  const LOCK_FIELDS = 'id volumeId partition lockType holderAppId holderExecutionId fencingToken acquiredAt expiresAt';
  const gqlAcquire = (input: Record<string, unknown>, key?: string, volumeId = v.volumeId) =>
    gw.gql(
      `mutation($v: ID!, $in: AcquireLockInput!) { acquireLock(volumeId: $v, input: $in) { ${LOCK_FIELDS} } }`,
      { v: volumeId, in: input },
      key,
    );

  it('acquireLock, with CONFLICT and VALIDATION_FAILED', async () => {
    const res = await gqlAcquire({ partition: '/gql', appId: 'g', executionId: 'e', lockType: 'exclusive', ttlSeconds: 120 });
    expect(res.body.errors, JSON.stringify(res.body)).toBeUndefined();
    const lock = res.body.data.acquireLock;
    expect(lock).toMatchObject({
      volumeId: v.volumeId,
      partition: '/gql/',
      lockType: 'exclusive',
      holderAppId: 'g',
      holderExecutionId: 'e',
    });
    expect(Date.parse(lock.expiresAt) - Date.parse(lock.acquiredAt)).toBeGreaterThanOrEqual(119_000);
    // The same lock over REST.
    const rest = (await list(v)).body.locks[0];
    expect(rest).toMatchObject({ lock_id: lock.id, fencing_token: lock.fencingToken, expires_at: lock.expiresAt });

    const conflict = await gqlAcquire({ partition: '/gql/sub/', appId: 'h' });
    expect(codeOf(conflict.body)).toBe('CONFLICT');
    expect(conflict.body.errors[0].extensions).toMatchObject({ holder_app_id: 'g', expires_at: lock.expiresAt });
    expect(conflict.body.data).toBeNull();

    const bad = await gqlAcquire({ partition: 'p', appId: 'g', ttlSeconds: 0 });
    expect(codeOf(bad.body)).toBe('VALIDATION_FAILED');
    expect(bad.body.errors[0].extensions.fields[0].path).toEqual(['input', 'ttlSeconds']);
    const badPartition = await gqlAcquire({ partition: 'a\u0002', appId: 'g' });
    expect(codeOf(badPartition.body)).toBe('VALIDATION_FAILED');
    expect(badPartition.body.errors[0].extensions.fields[0].path).toEqual(['input', 'partition']);
    const unknownType = await gqlAcquire({ partition: 'p', appId: 'g', lockType: 'mutex' });
    expect(unknownType.body.errors?.length).toBeGreaterThan(0);
    expect(unknownType.body.data ?? null).toBeNull();
    expect(codeOf((await gw.gql('mutation { acquireLock(volumeId: "nope", input: { partition: "p", appId: "g" }) { id } }')).body)).toBe(
      'NOT_FOUND',
    );

    const bot = await createKey(gw, 'acme', ['locks:write', 'volumes:read'], 'gbot');
    expect((await gw.call('POST', v.mounts, { app_id: 'gbot', path_pattern: '/**', access_level: 'write' })).status).toBe(201);
    expect(codeOf((await gqlAcquire({ partition: 'p', appId: 'not-me' }, bot)).body)).toBe('FORBIDDEN');
    expect(
      (await gw.gql('mutation($v: ID!, $id: ID!) { releaseLock(volumeId: $v, lockId: $id) }', { v: v.volumeId, id: lock.id })).body,
    ).toEqual({
      data: { releaseLock: true },
    });
  });

  it('renewLock, with NOT_FOUND, CONFLICT (expired) and VALIDATION_FAILED', async () => {
    const lock = (await gqlAcquire({ partition: 'r', appId: 'g', ttlSeconds: 5 })).body.data.acquireLock;
    const RENEW = `mutation($v: ID!, $id: ID!, $ttl: Int) { renewLock(volumeId: $v, lockId: $id, ttlSeconds: $ttl) { ${LOCK_FIELDS} } }`;
    const res = await gw.gql(RENEW, { v: v.volumeId, id: lock.id, ttl: 900 });
    expect(res.body.errors, JSON.stringify(res.body)).toBeUndefined();
    expect(res.body.data.renewLock).toMatchObject({ id: lock.id, fencingToken: lock.fencingToken, acquiredAt: lock.acquiredAt });
    expect(Date.parse(res.body.data.renewLock.expiresAt)).toBeGreaterThan(Date.parse(lock.expiresAt) + 800_000);

    const zero = await gw.gql(RENEW, { v: v.volumeId, id: lock.id, ttl: 0 });
    expect(codeOf(zero.body), JSON.stringify(zero.body)).toBe('VALIDATION_FAILED');
    expect(zero.body.errors[0].extensions.fields[0].path).toEqual(['ttlSeconds']);
    const tooLong = await gw.gql(RENEW, { v: v.volumeId, id: lock.id, ttl: 3601 });
    expect(codeOf(tooLong.body)).toBe('VALIDATION_FAILED');
    // Neither renewal changed the lease.
    expect((await list(v)).body.locks[0].expires_at).toBe(res.body.data.renewLock.expiresAt);

    expect(codeOf((await gw.gql(RENEW, { v: v.volumeId, id: '00000000-0000-4000-8000-000000000000' })).body)).toBe('NOT_FOUND');
    await drop(v, { partition: 'r', lock_id: lock.id });

    const short = (await gqlAcquire({ partition: 'r2', appId: 'g', ttlSeconds: 1 })).body.data.acquireLock;
    await waitUntilExpired({ expires_at: short.expiresAt });
    const expired = await gw.gql(RENEW, { v: v.volumeId, id: short.id, ttl: 60 });
    expect(codeOf(expired.body)).toBe('CONFLICT');
    expect(expired.body.errors[0].extensions.reason).toBe('expired');
  });

  it('releaseLock, twice → NOT_FOUND; another app → FORBIDDEN', async () => {
    const RELEASE = 'mutation($v: ID!, $id: ID!) { releaseLock(volumeId: $v, lockId: $id) }';
    const lock = (await gqlAcquire({ partition: 'rel', appId: 'g' })).body.data.acquireLock;
    expect((await gw.gql(RELEASE, { v: v.volumeId, id: lock.id })).body).toEqual({ data: { releaseLock: true } });
    const again = await gw.gql(RELEASE, { v: v.volumeId, id: lock.id });
    expect(codeOf(again.body)).toBe('NOT_FOUND');
    expect(codeOf((await gw.gql(RELEASE, { v: v.volumeId, id: 'garbage' })).body)).toBe('NOT_FOUND');

    const owner = await createKey(gw, 'acme', ['locks:write', 'volumes:read'], 'gowner');
    const intruder = await createKey(gw, 'acme', ['locks:write', 'volumes:read'], 'gintruder');
    for (const app of ['gowner', 'gintruder']) {
      expect((await gw.call('POST', v.mounts, { app_id: app, path_pattern: '/**', access_level: 'write' })).status).toBe(201);
    }
    const held = (await gqlAcquire({ partition: 'rel', appId: 'gowner' }, owner)).body.data.acquireLock;
    expect(codeOf((await gw.gql(RELEASE, { v: v.volumeId, id: held.id }, intruder)).body)).toBe('FORBIDDEN');
    expect((await gw.gql(RELEASE, { v: v.volumeId, id: held.id }, owner)).body).toEqual({ data: { releaseLock: true } });
  });

  it('Volume.locks lists live locks; another organisation sees no volume; lacking volumes:read is FORBIDDEN', async () => {
    const lv = await newVolume(gw, 'acme');
    const a = (await gqlAcquire({ partition: 'list-a', appId: 'g', lockType: 'shared' }, undefined, lv.volumeId)).body.data.acquireLock;
    const gone = (await gqlAcquire({ partition: 'list-b', appId: 'g', ttlSeconds: 1 }, undefined, lv.volumeId)).body.data.acquireLock;
    const released = (await gqlAcquire({ partition: 'list-c', appId: 'g' }, undefined, lv.volumeId)).body.data.acquireLock;
    await drop(lv, { partition: 'list-c', lock_id: released.id });
    const Q = `query($v: ID!) { volume(id: $v) { id locks { ${LOCK_FIELDS} } } }`;
    await waitUntilExpired({ expires_at: gone.expiresAt });
    const res = await gw.gql(Q, { v: lv.volumeId });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.volume.locks).toEqual([a]);

    const foreign = await createKey(gw, 'globex', ['volumes:read', 'locks:write']);
    const hidden = await gw.gql(Q, { v: lv.volumeId }, foreign);
    expect(hidden.body.data?.volume ?? null).toBeNull();
    const noRead = await createKey(gw, 'acme', ['locks:write']);
    expect(codeOf((await gw.gql(Q, { v: lv.volumeId }, noRead)).body)).toBe('FORBIDDEN');
    await drop(lv, { partition: 'list-a', lock_id: a.id });
  });

  it('writeEntry honours lockId and fencing', async () => {
    const W = `mutation($v: ID!, $p: String!, $lock: ID, $f: FencingInput) {
      writeEntry(volumeId: $v, path: $p, input: { contentText: "x" }, lockId: $lock, fencing: $f) { created } }`;
    const lock = (await gqlAcquire({ partition: '/guarded/', appId: 'g' })).body.data.acquireLock;
    const refused = await gw.gql(W, { v: v.volumeId, p: '/guarded/a.md' });
    expect(codeOf(refused.body)).toBe('LOCKED');
    expect(refused.body.errors[0].extensions).toMatchObject({ holder_app_id: 'g', partition: '/guarded/' });
    const ok = await gw.gql(W, {
      v: v.volumeId,
      p: '/guarded/a.md',
      lock: lock.id,
      f: { partition: '/guarded/', token: lock.fencingToken },
    });
    expect(ok.body, JSON.stringify(ok.body)).toEqual({ data: { writeEntry: { created: true } } });
    await drop(v, { partition: '/guarded/', lock_id: lock.id });
    const next = (await gqlAcquire({ partition: '/guarded/', appId: 'h' })).body.data.acquireLock;
    const stale = await gw.gql(W, { v: v.volumeId, p: '/guarded/a.md', f: { partition: '/guarded/', token: lock.fencingToken } });
    expect(codeOf(stale.body)).toBe('CONFLICT');
    expect(stale.body.errors[0].extensions).toMatchObject({ reason: 'stale_fencing_token', newest_token: next.fencingToken });
    await drop(v, { partition: '/guarded/', lock_id: next.id });
  });
});

describe('GraphQL: lockEvents over graphql-ws', () => {
  let v: TestVolume;
  beforeAll(async () => {
    v = await newVolume(gw, 'acme');
  });

  interface LockEvent {
    kind: string;
    volumeId: string;
    lockId: string;
    partition: string;
    lockType: string;
    holderAppId: string;
    fencingToken: number;
    expiresAt: string;
  }
  function subscribe(key: string, volumeId: string) {
    const client = createClient({
      url: `${gw.url.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${key}` },
      retryAttempts: 0,
    });
    const events: LockEvent[] = [];
    const errors: any[] = [];
    const stop = client.subscribe<{ lockEvents: LockEvent }>(
      {
        query: `subscription($v: ID!) { lockEvents(volumeId: $v) { kind volumeId lockId partition lockType holderAppId fencingToken expiresAt } }`,
        variables: { v: volumeId },
      },
      {
        next: (msg) => {
          if (msg.errors) errors.push(...msg.errors);
          if (msg.data) events.push(msg.data.lockEvents);
        },
        error: (err) => errors.push(err),
        complete: () => {},
      },
    );
    return {
      events,
      errors,
      close: async () => {
        stop();
        await client.dispose();
      },
    };
  }

  it('receives acquired, renewed, released and expired for locks taken over REST', async () => {
    const sub = subscribe(ADMIN_KEY, v.volumeId);
    try {
      // Live once a probe lock's event arrives (no fixed sleep): take and release probes until one shows.
      let n = 0;
      await waitFor(async () => {
        const probe = await take(v, { partition: `probe-${n++}`, app_id: 'probe' });
        await drop(v, probe);
        return sub.events.some((e) => e.lockId === probe.lock_id);
      });
      sub.events.length = 0;

      const lock = await take(v, { partition: '/watched/', app_id: 'w', ttl_seconds: 30 });
      const renewed = (await renew(v, { lock_id: lock.lock_id, ttl_seconds: 90 })).body.lock;
      await drop(v, lock);
      const short = await take(v, { partition: 'brief', app_id: 'w2', lock_type: 'shared', ttl_seconds: 1 });
      await waitUntilExpired(short);
      // Two replicas sweeping at the same moment announce each expired lock once.
      const swept = await Promise.all([sweepLocks(gw.app.runtime), sweepLocks(gw.app.runtime)]);
      expect(swept[0] + swept[1]).toBeGreaterThanOrEqual(1);
      await waitFor(async () => sub.events.some((e) => e.kind === 'expired'));

      const common = { volumeId: v.volumeId, lockId: lock.lock_id, partition: '/watched/', lockType: 'exclusive', holderAppId: 'w' };
      expect(sub.events).toEqual([
        { kind: 'acquired', ...common, fencingToken: lock.fencing_token, expiresAt: lock.expires_at },
        { kind: 'renewed', ...common, fencingToken: lock.fencing_token, expiresAt: renewed.expires_at },
        { kind: 'released', ...common, fencingToken: lock.fencing_token, expiresAt: renewed.expires_at },
        {
          kind: 'acquired',
          volumeId: v.volumeId,
          lockId: short.lock_id,
          partition: 'brief',
          lockType: 'shared',
          holderAppId: 'w2',
          fencingToken: short.fencing_token,
          expiresAt: short.expires_at,
        },
        {
          kind: 'expired',
          volumeId: v.volumeId,
          lockId: short.lock_id,
          partition: 'brief',
          lockType: 'shared',
          holderAppId: 'w2',
          fencingToken: short.fencing_token,
          expiresAt: short.expires_at,
        },
      ]);
      expect(sub.errors).toEqual([]);
      // Swept locks are gone from the table; a second sweep announces nothing new.
      await sweepLocks(gw.app.runtime);
      const other = await newVolume(gw, 'acme');
      await drop(other, await take(other, { partition: 'elsewhere', app_id: 'x' }));
      await drop(v, await take(v, { partition: 'marker', app_id: 'm' }));
      await waitFor(async () => sub.events.some((e) => e.partition === 'marker' && e.kind === 'released'));
      expect(sub.events.filter((e) => e.kind === 'expired')).toHaveLength(1);
      expect(
        sub.events.every((e) => e.volumeId === v.volumeId),
        'only this volume',
      ).toBe(true);
    } finally {
      await sub.close();
    }
  });

  it("refuses another organisation's volume and keys without volumes:read when subscribing", async () => {
    const foreign = await createKey(gw, 'globex', ['volumes:read', 'locks:write']);
    const sub = subscribe(foreign, v.volumeId);
    try {
      await waitFor(async () => sub.errors.length > 0);
      expect(sub.errors[0].extensions?.code).toBe('NOT_FOUND');
      // Nothing leaks to it afterwards either.
      await drop(v, await take(v, { partition: 'after-refusal', app_id: 'x' }));
      expect(sub.events).toEqual([]);
    } finally {
      await sub.close();
    }
    const noRead = await createKey(gw, 'acme', ['locks:write']);
    const sub2 = subscribe(noRead, v.volumeId);
    try {
      await waitFor(async () => sub2.errors.length > 0);
      expect(sub2.errors[0].extensions?.code).toBe('FORBIDDEN');
      expect(sub2.events).toEqual([]);
    } finally {
      await sub2.close();
    }
  });
});
