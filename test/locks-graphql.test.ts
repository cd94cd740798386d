import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepLocks } from '../src/domain/locks/locks.js';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { subscribe } from './helpers/graphql-ws.js';
import { lockRoutes } from './helpers/locks.js';

/**
 * Locks over GraphQL on a real (PGlite) Postgres: acquireLock, renewLock, releaseLock, Volume.locks,
 * writeEntry with lockId and fencing, and the lockEvents subscription over graphql-ws. The
 * background sweeper is slowed down so expired locks stay in place until a test sweeps them itself.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
});
afterAll(async () => {
  await gw?.stop();
});

const { list, renew, take, drop, waitUntilExpired } = lockRoutes(() => gw);

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
  const watch = (key: string, volumeId: string) =>
    subscribe<LockEvent>(
      gw.url,
      key,
      `subscription($v: ID!) { lockEvents(volumeId: $v) { kind volumeId lockId partition lockType holderAppId fencingToken expiresAt } }`,
      { v: volumeId },
    );

  it('receives acquired, renewed, released and expired for locks taken over REST', async () => {
    const sub = watch(ADMIN_KEY, v.volumeId);
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
    const sub = watch(foreign, v.volumeId);
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
    const sub2 = watch(noRead, v.volumeId);
    try {
      await waitFor(async () => sub2.errors.length > 0);
      expect(sub2.errors[0].extensions?.code).toBe('FORBIDDEN');
      expect(sub2.events).toEqual([]);
    } finally {
      await sub2.close();
    }
  });
});
