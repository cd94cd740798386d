import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepLocks } from '../src/domain/locks/locks.js';
import { type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { call } from './helpers/http.js';
import { type Replicas, startReplicas } from './helpers/replicas.js';

/**
 * Locks across two gateway replicas on one Postgres (helpers/replicas.ts): one replica in this
 * process, the other a child process running the real entry point. Whatever replica an acquirer
 * reaches, exactly one wins and fencing tokens only go up.
 */

// Both pools together stay under the socket server's connection cap.
const POOL = '4';

let replicaSet: Replicas | undefined;
let a: TestGateway | undefined;
let bUrl: string;
let v: TestVolume;

beforeAll(async () => {
  replicaSet = await startReplicas({
    env: { DATABASE_POOL_SIZE: POOL, SWEEP_INTERVAL_MS: '3600000' },
    childEnv: { NODE_ENV: 'test' },
    ownDataDir: true,
  });
  a = replicaSet.a;
  bUrl = replicaSet.b.url;
  v = await newVolume(a, 'acme');
}, 120_000);

afterAll(async () => {
  await replicaSet?.stop();
});

const replicas = () => [a!.url, bUrl];
const locks = () => `${v.volumeUrl}/locks`;

describe('locks across two replicas on one database', () => {
  it('both replicas serve the same volume', async () => {
    const [onA, onB] = await Promise.all(replicas().map((base) => call(base, 'GET', v.volumeUrl)));
    expect(onA?.status).toBe(200);
    expect(onB?.body).toEqual(onA?.body);
  });

  it('30 concurrent exclusive acquirers split across both replicas: exactly one wins', async () => {
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => call(replicas()[i % 2]!, 'POST', locks(), { partition: 'shared-job', app_id: `worker-${i}` })),
    );
    const statuses = results.map((r) => r.status);
    expect(
      statuses.filter((s) => s === 201),
      JSON.stringify(statuses),
    ).toHaveLength(1);
    expect(
      statuses.filter((s) => s === 409),
      JSON.stringify(statuses),
    ).toHaveLength(29);
    const winnerIndex = statuses.indexOf(201);
    const winner = results[winnerIndex]!.body.lock;
    expect(winner.holder_app_id).toBe(`worker-${winnerIndex}`);
    // Losers on both replicas name the one holder.
    for (const [i, r] of results.entries()) {
      if (r.status === 409) {
        expect(r.body.details, `loser ${i}`).toMatchObject({ holder_app_id: winner.holder_app_id, expires_at: winner.expires_at });
      }
    }
    expect(new Set(results.map((_, i) => i % 2).filter((_, i) => statuses[i] === 409)).size, 'losers on both replicas').toBe(2);
    const [row] = await a!.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
      "SELECT count(*)::int AS n FROM locks WHERE volume_id = $1 AND partition = 'shared-job' AND released_at IS NULL",
      v.volumeId,
    );
    expect(row?.n).toBe(1);
    // Both replicas list the winner; the other replica may release it.
    for (const base of replicas()) expect((await call(base, 'GET', locks())).body.locks).toEqual([winner]);
    const other = replicas()[(winnerIndex + 1) % 2]!;
    expect((await call(other, 'DELETE', `${locks()}/shared-job?lock_id=${winner.lock_id}`)).status).toBe(200);
    for (const base of replicas()) expect((await call(base, 'GET', locks())).body.locks).toEqual([]);
  });

  it('20 acquire/release pairs alternating between replicas: fencing tokens strictly increase', async () => {
    const tokens: number[] = [];
    for (let i = 0; i < 20; i++) {
      const base = replicas()[i % 2]!;
      const got = await call(base, 'POST', locks(), { partition: 'relay', app_id: `relay-${i % 2}` });
      expect(got.status, JSON.stringify(got.body)).toBe(201);
      tokens.push(got.body.lock.fencing_token);
      // Released through the other replica.
      const rel = await call(replicas()[(i + 1) % 2]!, 'DELETE', `${locks()}/relay?lock_id=${got.body.lock.lock_id}`);
      expect(rel.status, JSON.stringify(rel.body)).toBe(200);
    }
    for (let i = 1; i < tokens.length; i++) expect(tokens[i], `token ${i} after ${tokens[i - 1]}`).toBeGreaterThan(tokens[i - 1]!);
    expect(new Set(tokens).size).toBe(20);

    // A token issued through one replica is stale on the other once a newer one was issued.
    const entry = `${v.volumeUrl}/entries/relay/out.txt`;
    const old = tokens[0]!;
    const stale = await call(
      bUrl,
      'PUT',
      entry,
      { content_text: 'late' },
      { headers: { 'x-fencing-token': String(old), 'x-lock-partition': 'relay' } },
    );
    expect(stale.status, JSON.stringify(stale.body)).toBe(409);
    expect(stale.body.details).toMatchObject({ reason: 'stale_fencing_token', newest_token: tokens.at(-1) });
    const fresh = await call(
      a!.url,
      'PUT',
      entry,
      { content_text: 'ok' },
      { headers: { 'x-fencing-token': String(tokens.at(-1)), 'x-lock-partition': 'relay' } },
    );
    expect(fresh.status, JSON.stringify(fresh.body)).toBe(201);
  });

  it('a path lock taken through one replica guards writes through the other', async () => {
    const lock = await call(a!.url, 'POST', locks(), { partition: '/guarded/', app_id: 'holder' });
    expect(lock.status).toBe(201);
    const entry = `${v.volumeUrl}/entries/guarded/a.txt`;
    const refused = await call(bUrl, 'PUT', entry, { content_text: 'x' });
    expect(refused.status, JSON.stringify(refused.body)).toBe(409);
    expect(refused.body).toMatchObject({ error: 'LOCKED', details: { holder_app_id: 'holder', partition: '/guarded/' } });
    const allowed = await call(bUrl, 'PUT', entry, { content_text: 'x' }, { headers: { 'x-lock-id': lock.body.lock.lock_id } });
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(201);
    expect((await call(bUrl, 'DELETE', `${locks()}/guarded/?lock_id=${lock.body.lock.lock_id}`)).status).toBe(200);
    expect((await call(a!.url, 'PUT', entry, { content_text: 'y' })).status).toBe(200);
  });

  it('an expired lock taken through one replica is swept through the other', async () => {
    const short = await call(bUrl, 'POST', locks(), { partition: 'ephemeral', app_id: 'brief', ttl_seconds: 1 });
    expect(short.status).toBe(201);
    // Unlisted on both replicas once its lease has run out (polling, no fixed sleep).
    await waitFor(async () => {
      const lists = await Promise.all(replicas().map((base) => call(base, 'GET', locks())));
      return lists.every((l) => l.body.locks.length === 0);
    });
    const count = async () => {
      const [row] = await a!.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
        'SELECT count(*)::int AS n FROM locks WHERE id = $1',
        short.body.lock.lock_id,
      );
      return row?.n;
    };
    expect(await count()).toBe(1);
    // The in-process replica's sweeper, over adapter-pg: removes it once.
    expect(await sweepLocks(a!.app.runtime)).toBeGreaterThanOrEqual(1);
    expect(await count()).toBe(0);
    // The partition's next holder still gets a newer token.
    const next = await call(a!.url, 'POST', locks(), { partition: 'ephemeral', app_id: 'next' });
    expect(next.body.lock.fencing_token).toBeGreaterThan(short.body.lock.fencing_token);
  });
});
