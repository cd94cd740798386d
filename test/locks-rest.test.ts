import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { expect422, expectConflict, expectForbidden, expectNotFound, lockRoutes, locksUrl } from './helpers/locks.js';

/**
 * Locks over REST on a real (PGlite) Postgres: the legacy shapes, validation, exactly-one-winner
 * under contention, expiry, shared/exclusive and prefix overlap, renewal, release, and the rules for
 * app keys, scopes and organisations. The background sweeper is slowed down so expired locks stay
 * in place until a test sweeps them itself. Fencing and write guards: locks-fencing.test.ts;
 * GraphQL: locks-graphql.test.ts.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
});
afterAll(async () => {
  await gw?.stop();
});

const { acquire, renew, list, release, take, drop, liveRows, waitUntilExpired } = lockRoutes(() => gw);

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
