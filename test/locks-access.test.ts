import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createKey, startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { request } from './helpers/http.js';
import { expectForbidden, expectNotFound, lockRoutes, locksUrl } from './helpers/locks.js';
import { upload } from './helpers/uploads.js';

/**
 * Who may take a lock, and what a path lock covers, over real HTTP (REST and GraphQL) on a real
 * (PGlite) Postgres. Taking or renewing a lock needs `locks:write`; an app key also needs write
 * access where the lock reaches (a write/admin mount matching a path partition, any write/admin mount
 * for a named one) and gets nothing on a volume it reaches only through sharing. A path lock covers
 * the path itself and everything under it: a lock on the file `/notes/a.md` guards that file.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
});
afterAll(async () => {
  await gw?.stop();
});

type Res = { status: number; body: any };

const ORG = 'acme';
const { acquire, renew, take, drop } = lockRoutes(() => gw);

async function mount(v: TestVolume, appId: string, pattern: string, level: 'read' | 'write' | 'admin'): Promise<string> {
  const res = await gw.call('POST', v.mounts, { app_id: appId, path_pattern: pattern, access_level: level });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.mount.mount_id;
}

// The 409s here are checked by partition (helpers/locks.ts has the stricter ones on holder, expiry and message).
function expectLocked(res: Res, holder: { holder_app_id: string; partition: string }, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(409);
  expect(res.body, what).toMatchObject({
    error: 'LOCKED',
    status_code: 409,
    details: { holder_app_id: holder.holder_app_id, partition: holder.partition },
  });
}
function expectConflict(res: Res, holder: { holder_app_id: string; partition: string }, what: string) {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(409);
  expect(res.body, what).toMatchObject({
    error: 'CONFLICT',
    details: { reason: 'locked', holder_app_id: holder.holder_app_id, partition: holder.partition },
  });
}

const LOCK_FIELDS = 'id partition lockType holderAppId fencingToken expiresAt';
const gqlAcquire = (v: TestVolume, input: Record<string, unknown>, key?: string) =>
  gw.gql(
    `mutation($v: ID!, $in: AcquireLockInput!) { acquireLock(volumeId: $v, input: $in) { ${LOCK_FIELDS} } }`,
    { v: v.volumeId, in: input },
    key,
  );
const gqlRenew = (v: TestVolume, lockId: string, key?: string) =>
  gw.gql(
    `mutation($v: ID!, $id: ID!) { renewLock(volumeId: $v, lockId: $id, ttlSeconds: 120) { ${LOCK_FIELDS} } }`,
    { v: v.volumeId, id: lockId },
    key,
  );
function expectGqlForbidden(res: Res, permission: string, what: string) {
  expect(res.body.data?.acquireLock ?? res.body.data?.renewLock ?? null, `${what}: ${JSON.stringify(res.body)}`).toBeNull();
  expect(res.body.errors?.[0]?.extensions, `${what}: ${JSON.stringify(res.body)}`).toMatchObject({
    code: 'FORBIDDEN',
    required_permission: permission,
  });
}
function expectGqlNotFound(res: Res, what: string) {
  expect(res.body.data?.acquireLock ?? null, `${what}: ${JSON.stringify(res.body)}`).toBeNull();
  expect(res.body.errors?.[0]?.extensions?.code, `${what}: ${JSON.stringify(res.body)}`).toBe('NOT_FOUND');
}

/** Every lock row and fencing counter of a volume, straight from SQL (not through the API under test). */
async function lockState(volumeId: string) {
  const prisma = gw.app.database.prisma;
  const locks = await prisma.$queryRawUnsafe<{ id: string; partition: string; expires_at: string; released: boolean }[]>(
    'SELECT id, partition, expires_at::text AS expires_at, released_at IS NOT NULL AS released FROM locks WHERE volume_id = $1 ORDER BY partition, acquired_at',
    volumeId,
  );
  const counters = await prisma.$queryRawUnsafe<{ partition: string; last_token: string }[]>(
    'SELECT partition, last_token::text AS last_token FROM fencing_counters WHERE volume_id = $1 ORDER BY partition',
    volumeId,
  );
  return { locks, counters };
}

const APP_SCOPES = ['locks:write', 'volumes:read', 'entries:read', 'entries:write'];

describe('taking a lock needs write access: app keys', () => {
  it('a read-only app key (read mount only) takes no lock over REST or GraphQL, and nothing is written', async () => {
    const v = await newVolume(gw, ORG);
    await mount(v, 'reader', '/**', 'read');
    await mount(v, 'reader', '/docs/**', 'read');
    const reader = await createKey(gw, ORG, APP_SCOPES, 'reader');
    // Counters that exist already must not move either: the platform key takes and releases once.
    await drop(v, await take(v, { partition: '/reports/', app_id: 'ops' }));
    await drop(v, await take(v, { partition: 'jobs', app_id: 'ops' }));
    const before = await lockState(v.volumeId);
    expect(before.counters).toEqual([
      { partition: '/reports/', last_token: '1' },
      { partition: 'jobs', last_token: '1' },
    ]);

    for (const lock_type of ['exclusive', 'shared']) {
      expectForbidden(
        await acquire(v, { partition: '/reports/', app_id: 'reader', lock_type }, reader),
        'path:write',
        `REST ${lock_type} path`,
      );
      expectForbidden(
        await acquire(v, { partition: '/docs/a.md', app_id: 'reader', lock_type }, reader),
        'path:write',
        `REST ${lock_type} file`,
      );
      expectForbidden(await acquire(v, { partition: '/', app_id: 'reader', lock_type }, reader), 'path:write', `REST ${lock_type} root`);
      expectForbidden(
        await acquire(v, { partition: 'jobs', app_id: 'reader', lock_type }, reader),
        'volume:write',
        `REST ${lock_type} named`,
      );
      expectForbidden(
        await acquire(v, { partition: 'fresh', app_id: 'reader', lock_type }, reader),
        'volume:write',
        `REST ${lock_type} new name`,
      );
    }
    expectGqlForbidden(await gqlAcquire(v, { partition: '/reports/', appId: 'reader' }, reader), 'path:write', 'GraphQL path');
    expectGqlForbidden(await gqlAcquire(v, { partition: '/docs/a.md', appId: 'reader' }, reader), 'path:write', 'GraphQL file');
    expectGqlForbidden(await gqlAcquire(v, { partition: 'jobs', appId: 'reader' }, reader), 'volume:write', 'GraphQL named');
    expectGqlForbidden(
      await gqlAcquire(v, { partition: 'fresh', appId: 'reader', lockType: 'shared' }, reader),
      'volume:write',
      'GraphQL shared named',
    );

    // No lock row, no fencing token issued, nothing listed.
    expect(await lockState(v.volumeId)).toEqual(before);
    // Listing needs reading only: the key sees that nothing was taken.
    const listed = await gw.call('GET', locksUrl(v), undefined, reader);
    expect(listed.status).toBe(200);
    expect(listed.body.locks).toEqual([]);
  });

  it('a write mount on /out/** allows locks on /out/… and named partitions, not on read-only or unmounted paths', async () => {
    const v = await newVolume(gw, ORG);
    await mount(v, 'writer', '/out/**', 'write');
    await mount(v, 'writer', '/in/**', 'read');
    const writer = await createKey(gw, ORG, APP_SCOPES, 'writer');

    const x = await take(v, { partition: '/out/x', app_id: 'writer' }, writer);
    expect(x.partition).toBe('/out/x/');
    const named = await take(v, { partition: 'batch', app_id: 'writer' }, writer);
    const before = await lockState(v.volumeId);

    expectForbidden(await acquire(v, { partition: '/in/', app_id: 'writer' }, writer), 'path:write', 'read mount');
    expectForbidden(await acquire(v, { partition: '/in/deep/file.md', app_id: 'writer' }, writer), 'path:write', 'read mount, deeper');
    // Not readable at all: it does not exist for the app (as an entry write there answers).
    expectNotFound(await acquire(v, { partition: '/elsewhere/', app_id: 'writer' }, writer), 'no mount');
    expectNotFound(await acquire(v, { partition: '/', app_id: 'writer' }, writer), 'the root');
    expectNotFound(await request(gw, 'PUT', v.entry('/elsewhere/a.md'), { body: { content_text: 'x' }, key: writer }), 'entry write');
    expectForbidden(
      await request(gw, 'PUT', v.entry('/in/a.md'), { body: { content_text: 'x' }, key: writer }),
      'path:write',
      'entry write on a read mount',
    );
    // /out itself is the mount's root; /outside is not under it.
    expect((await acquire(v, { partition: '/out', app_id: 'writer' }, writer)).status, 'overlaps /out/x/').toBe(409);
    expectNotFound(await acquire(v, { partition: '/outside/', app_id: 'writer' }, writer), 'a sibling of the mount');

    // GraphQL: the same rule.
    expectGqlForbidden(await gqlAcquire(v, { partition: '/in/', appId: 'writer' }, writer), 'path:write', 'GraphQL read mount');
    expectGqlNotFound(await gqlAcquire(v, { partition: '/elsewhere/', appId: 'writer' }, writer), 'GraphQL no mount');
    expect(await lockState(v.volumeId)).toEqual(before);
    const y = await gqlAcquire(v, { partition: '/out/y/', appId: 'writer' }, writer);
    expect(y.body.errors, JSON.stringify(y.body)).toBeUndefined();
    expect(y.body.data.acquireLock).toMatchObject({ partition: '/out/y/', holderAppId: 'writer' });
    const n2 = await gqlAcquire(v, { partition: 'batch-2', appId: 'writer', lockType: 'shared' }, writer);
    expect(n2.body.errors, JSON.stringify(n2.body)).toBeUndefined();

    // Renewal by the holder, over both transports.
    expect((await renew(v, { lock_id: x.lock_id, ttl_seconds: 120 }, writer)).status).toBe(200);
    expect((await gqlRenew(v, named.lock_id, writer)).body.errors).toBeUndefined();

    for (const l of [
      x,
      named,
      { partition: '/out/y/', lock_id: y.body.data.acquireLock.id },
      { partition: 'batch-2', lock_id: n2.body.data.acquireLock.id },
    ]) {
      await drop(v, l, writer);
    }
  });

  it('an admin mount counts as write access; a write mount on a single file allows locking that file', async () => {
    const v = await newVolume(gw, ORG);
    await mount(v, 'boss', '/team/**', 'admin');
    await mount(v, 'one', '/notes/a.md', 'write');
    await mount(v, 'one', '/notes/**', 'read');
    const boss = await createKey(gw, ORG, APP_SCOPES, 'boss');
    const one = await createKey(gw, ORG, APP_SCOPES, 'one');
    await drop(v, await take(v, { partition: '/team/', app_id: 'boss' }, boss), boss);
    await drop(v, await take(v, { partition: 'standup', app_id: 'boss' }, boss), boss);
    await drop(v, await take(v, { partition: '/notes/a.md', app_id: 'one' }, one), one);
    await drop(v, await take(v, { partition: 'any-name', app_id: 'one' }, one), one);
    expectForbidden(await acquire(v, { partition: '/notes/', app_id: 'one' }, one), 'path:write', 'the folder around the file');
    expectForbidden(await acquire(v, { partition: '/notes/b.md', app_id: 'one' }, one), 'path:write', 'a sibling file');
  });

  it('renewing re-checks the rule (a withdrawn write mount stops renewals); the holder can still release', async () => {
    const v = await newVolume(gw, ORG);
    const writeMount = await mount(v, 'fading', '/w/**', 'write');
    await mount(v, 'fading', '/**', 'read');
    const fading = await createKey(gw, ORG, APP_SCOPES, 'fading');
    const pathLock = await take(v, { partition: '/w/a/', app_id: 'fading', ttl_seconds: 300 }, fading);
    const namedLock = await take(v, { partition: 'cron', app_id: 'fading', ttl_seconds: 300 }, fading);
    expect((await renew(v, { lock_id: pathLock.lock_id }, fading)).status).toBe(200);

    const removed = await gw.call('DELETE', `${v.mounts}/${writeMount}`);
    expect(removed.status, JSON.stringify(removed.body)).toBe(200);
    const before = await lockState(v.volumeId);
    expectForbidden(await renew(v, { lock_id: pathLock.lock_id }, fading), 'path:write', 'REST renew path');
    expectForbidden(await renew(v, { lock_id: namedLock.lock_id }, fading), 'volume:write', 'REST renew named');
    expectGqlForbidden(await gqlRenew(v, pathLock.lock_id, fading), 'path:write', 'GraphQL renew path');
    expectGqlForbidden(await gqlRenew(v, namedLock.lock_id, fading), 'volume:write', 'GraphQL renew named');
    expectForbidden(await acquire(v, { partition: '/w/b/', app_id: 'fading' }, fading), 'path:write', 'acquire after');
    // The leases did not move.
    expect(await lockState(v.volumeId)).toEqual(before);
    // Letting go stays possible.
    await drop(v, pathLock, fading);
    const rel = await gw.gql(
      'mutation($v: ID!, $id: ID!) { releaseLock(volumeId: $v, lockId: $id) }',
      { v: v.volumeId, id: namedLock.lock_id },
      fading,
    );
    expect(rel.body, JSON.stringify(rel.body)).toEqual({ data: { releaseLock: true } });
  });

  it('a write mount removed after the access check and before the lock is written refuses the lock', async () => {
    const v = await newVolume(gw, ORG);
    await mount(v, 'racer', '/**', 'read');
    const racer = await createKey(gw, ORG, APP_SCOPES, 'racer');
    // The removal lands between acquireLock's first check and its transaction (a seam: PGlite runs one
    // transaction at a time). The check runs again inside the transaction, under the volume's gate,
    // which removing a mount takes exclusively; before, both acquisitions below took their lock.
    const removeOnceChecked = (mountId: string) => {
      gw.app.runtime.hooks.afterLockAccessCheck = async (volumeId) => {
        if (volumeId !== v.volumeId) return;
        gw.app.runtime.hooks.afterLockAccessCheck = undefined;
        const res = await gw.call('DELETE', `${v.mounts}/${mountId}`);
        expect(res.status, JSON.stringify(res.body)).toBe(200);
      };
    };
    try {
      removeOnceChecked(await mount(v, 'racer', '/w/**', 'write'));
      expectForbidden(await acquire(v, { partition: '/w/a/', app_id: 'racer' }, racer), 'path:write', 'path partition');
      removeOnceChecked(await mount(v, 'racer', '/w/**', 'write'));
      expectForbidden(await acquire(v, { partition: 'nightly', app_id: 'racer' }, racer), 'volume:write', 'named partition');
    } finally {
      gw.app.runtime.hooks.afterLockAccessCheck = undefined;
    }
    // No lock was written, and no fencing token issued.
    const [row] = await gw.app.database.prisma.$queryRaw<{ locks: number; tokens: number }[]>`
      SELECT (SELECT count(*)::int FROM locks WHERE volume_id = ${v.volumeId}) AS locks,
             (SELECT count(*)::int FROM fencing_counters WHERE volume_id = ${v.volumeId}) AS tokens`;
    expect(row).toEqual({ locks: 0, tokens: 0 });
  });

  it('a volume reached only because it is shared allows no locks, though its paths are readable', async () => {
    const v = await newVolume(gw, ORG);
    await putText(gw, v, '/pub/readme.md', 'hello');
    expect((await gw.call('POST', `${v.volumeUrl}/make-shared`)).status).toBe(200);
    const outsider = await createKey(gw, ORG, APP_SCOPES, 'outsider');
    expect((await gw.call('GET', v.entry('/pub/readme.md'), undefined, outsider)).status).toBe(200);
    const before = await lockState(v.volumeId);
    for (const partition of ['/pub/', '/pub/readme.md', '/', 'named']) {
      expectForbidden(await acquire(v, { partition, app_id: 'outsider' }, outsider), 'locks:write', `REST ${partition}`);
      expectGqlForbidden(await gqlAcquire(v, { partition, appId: 'outsider' }, outsider), 'locks:write', `GraphQL ${partition}`);
    }
    expect(await lockState(v.volumeId)).toEqual(before);

    // With a read mount on the shared volume it is not "shared only", but it still has nothing to write.
    await mount(v, 'outsider', '/pub/**', 'read');
    expectForbidden(await acquire(v, { partition: '/pub/', app_id: 'outsider' }, outsider), 'path:write', 'read mount');
    expectForbidden(await acquire(v, { partition: '/other/', app_id: 'outsider' }, outsider), 'path:write', 'readable through sharing');
    expectForbidden(await acquire(v, { partition: 'named', app_id: 'outsider' }, outsider), 'volume:write', 'named');
    expect(await lockState(v.volumeId)).toEqual(before);
  });
});

describe('taking a lock: org keys and the platform key are governed by scopes alone', () => {
  it('an org key without locks:write is refused naming it; with it, any partition', async () => {
    const v = await newVolume(gw, ORG);
    const before = await lockState(v.volumeId);
    const noLocks = await createKey(gw, ORG, ['volumes:read', 'entries:read', 'entries:write']);
    expectForbidden(await acquire(v, { partition: '/a/', app_id: 'x' }, noLocks), 'locks:write', 'REST path');
    expectForbidden(await acquire(v, { partition: 'n', app_id: 'x' }, noLocks), 'locks:write', 'REST named');
    expectGqlForbidden(await gqlAcquire(v, { partition: '/a/', appId: 'x' }, noLocks), 'locks:write', 'GraphQL');
    expect(await lockState(v.volumeId)).toEqual(before);

    // No entries:write, no mounts: the scope alone decides for org keys.
    const locker = await createKey(gw, ORG, ['locks:write', 'volumes:read']);
    const a = await take(v, { partition: '/a/', app_id: 'x' }, locker);
    const n = await take(v, { partition: 'n', app_id: 'x' }, locker);
    const root = await gqlAcquire(v, { partition: '/b.md', appId: 'y' }, locker);
    expect(root.body.errors, JSON.stringify(root.body)).toBeUndefined();
    expectForbidden(await renew(v, { lock_id: a.lock_id }, noLocks), 'locks:write', 'renew without the scope');
    expect((await renew(v, { lock_id: a.lock_id }, locker)).status).toBe(200);
    await drop(v, a, locker);
    await drop(v, n, locker);
    await drop(v, { partition: '/b.md/', lock_id: root.body.data.acquireLock.id }, ADMIN_KEY);
  });
});

describe('a path lock covers the path itself and everything under it', () => {
  let v: TestVolume;
  let holderKey: string;
  let otherKey: string;
  beforeAll(async () => {
    v = await newVolume(gw, ORG);
    const scopes = ['entries:read', 'entries:write', 'locks:write', 'volumes:read'];
    holderKey = await createKey(gw, ORG, scopes);
    otherKey = await createKey(gw, ORG, scopes);
    await putText(gw, v, '/notes/a.md', 'original');
    await putText(gw, v, '/notes/a.md.bak', 'backup');
    await putText(gw, v, '/tmp/src.md', 'source');
  });

  it('a lock on the file /notes/a.md refuses writes to the file and under it, not to its siblings', async () => {
    const lock = await take(v, { partition: '/notes/a.md', app_id: 'holder' }, holderKey);
    expect(lock.partition).toBe('/notes/a.md/');
    const other = { key: otherKey };

    // The file itself, by another org key: PUT, upload, DELETE, move from and to.
    expectLocked(await request(gw, 'PUT', v.entry('/notes/a.md'), { body: { content_text: 'x' }, ...other }), lock, 'PUT');
    expectLocked(
      await upload(gw, `${v.entry('/notes/a.md')}/upload`, { data: Buffer.from('bytes') }, {}, { key: otherKey }),
      lock,
      'upload',
    );
    expectLocked(await request(gw, 'DELETE', v.entry('/notes/a.md'), other), lock, 'DELETE');
    expectLocked(await request(gw, 'POST', v.move, { body: { from: '/notes/a.md', to: '/tmp/moved.md' }, ...other }), lock, 'move from');
    expectLocked(
      await request(gw, 'POST', v.move, { body: { from: '/tmp/src.md', to: '/notes/a.md', overwrite: true }, ...other }),
      lock,
      'move to',
    );
    // Not the platform key either, nor the holder without presenting the lock.
    expectLocked(await request(gw, 'PUT', v.entry('/notes/a.md'), { body: { content_text: 'x' } }), lock, 'platform key');
    expectLocked(await request(gw, 'PUT', v.entry('/notes/a.md'), { body: { content_text: 'x' }, key: holderKey }), lock, 'holder w/o id');
    // GraphQL writes too.
    const W =
      'mutation($v: ID!, $p: String!, $lock: ID) { writeEntry(volumeId: $v, path: $p, input: { contentText: "g" }, lockId: $lock) { created } }';
    const gqlRefused = await gw.gql(W, { v: v.volumeId, p: '/notes/a.md' }, otherKey);
    expect(gqlRefused.body.errors?.[0]?.extensions, JSON.stringify(gqlRefused.body)).toMatchObject({
      code: 'LOCKED',
      partition: '/notes/a.md/',
    });

    // Children.
    expectLocked(await request(gw, 'PUT', v.entry('/notes/a.md/child.txt'), { body: { content_text: 'x' }, ...other }), lock, 'child');
    expectLocked(await request(gw, 'PUT', v.entry('/notes/a.md/deep/er.txt'), { body: { content_text: 'x' }, ...other }), lock, 'deep');

    // Nothing changed.
    expect((await gw.call('GET', v.entry('/notes/a.md'))).body).toMatchObject({ content_text: 'original', version: 1 });
    expect((await gw.call('GET', v.entry('/tmp/src.md'))).status).toBe(200);
    expect((await gw.call('GET', v.entry('/tmp/moved.md'))).status).toBe(404);
    expect((await gw.call('GET', v.entry('/notes/a.md/child.txt'))).status).toBe(404);

    // Siblings and look-alikes are free.
    for (const p of ['/notes/a.mdx', '/notes/a', '/notes/a.m', '/notes/b.md', '/notes/a.md.bak', '/notes/a.mdx/child.txt']) {
      const res = await request(gw, 'PUT', v.entry(p), { body: { content_text: 'sibling' }, ...other });
      expect([200, 201], `${p}: ${JSON.stringify(res.body)}`).toContain(res.status);
    }
    expect((await request(gw, 'DELETE', v.entry('/notes/a.mdx'), other)).status).toBe(200);

    // The holder presenting the lock (and its fencing token, partition named either way) writes.
    const put = await request(gw, 'PUT', v.entry('/notes/a.md'), {
      body: { content_text: 'by holder' },
      key: holderKey,
      headers: { 'x-lock-id': lock.lock_id, 'x-fencing-token': String(lock.fencing_token), 'x-lock-partition': '/notes/a.md' },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const created = await request(gw, 'PUT', v.entry('/notes/a.md/child.txt'), {
      body: { content_text: 'child' },
      key: holderKey,
      headers: { 'x-lock-id': lock.lock_id },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const gqlOk = await gw.gql(W, { v: v.volumeId, p: '/notes/a.md', lock: lock.lock_id }, holderKey);
    expect(gqlOk.body, JSON.stringify(gqlOk.body)).toEqual({ data: { writeEntry: { created: false } } });

    // Released with the partition as given (no trailing slash): the file is free again.
    await drop(v, { partition: '/notes/a.md', lock_id: lock.lock_id }, holderKey);
    expect((await request(gw, 'PUT', v.entry('/notes/a.md'), { body: { content_text: 'after' }, ...other })).status).toBe(200);
  });

  it('a lock on a folder covers the file of the same name (/reports/ guards /reports)', async () => {
    const lock = await take(v, { partition: '/reports/', app_id: 'holder' }, holderKey);
    expectLocked(await request(gw, 'PUT', v.entry('/reports'), { body: { content_text: 'x' }, key: otherKey }), lock, '/reports');
    expectLocked(await request(gw, 'PUT', v.entry('/reports/q1.md'), { body: { content_text: 'x' }, key: otherKey }), lock, 'under');
    expect((await request(gw, 'PUT', v.entry('/reports-2024'), { body: { content_text: 'x' }, key: otherKey })).status).toBe(201);
    await drop(v, lock, holderKey);
  });

  it('path partitions overlap when one is a prefix of the other, segment-wise', async () => {
    const file = await take(v, { partition: '/ov/a.md', app_id: 'p1' });
    expectConflict(await acquire(v, { partition: '/ov/a.md/x/', app_id: 'p2' }), file, 'below the file');
    expectConflict(await acquire(v, { partition: '/ov/a.md/', app_id: 'p2', lock_type: 'shared' }), file, 'the same, shared');
    expectConflict(await acquire(v, { partition: '/ov/', app_id: 'p2' }), file, 'above the file');
    const lookAlike = await take(v, { partition: '/ov/a.mdx', app_id: 'p2' });
    const shorter = await take(v, { partition: '/ov/a', app_id: 'p2' });
    await drop(v, file);

    // The other direction: a lock below blocks the file's partition.
    const below = await take(v, { partition: '/ov/a.md/x/', app_id: 'p1' });
    expectConflict(await acquire(v, { partition: '/ov/a.md', app_id: 'p2' }), below, 'the file over a lock below it');

    // /n/a/ and /n/ab/ share a string prefix but not a path one.
    const a = await take(v, { partition: '/n/a/', app_id: 'p1' });
    const ab = await take(v, { partition: '/n/ab/', app_id: 'p2' });
    expect((await acquire(v, { partition: '/n/', app_id: 'p3' })).status, 'their parent overlaps both').toBe(409);
    for (const l of [lookAlike, shorter, below, a, ab]) await drop(v, l);
    expect((await gw.call('GET', locksUrl(v))).body.locks).toEqual([]);
  });
});
