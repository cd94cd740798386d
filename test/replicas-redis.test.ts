import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestGateway } from './helpers/app.js';
import type { ChildGateway } from './helpers/child.js';
import { subscribe } from './helpers/graphql-ws.js';
import { ADMIN_KEY, call } from './helpers/http.js';
import { type Replicas, startReplicas } from './helpers/replicas.js';

/**
 * Two gateway replicas on one database and one Redis: a subscriber on either sees the events of
 * writes made through the other (yoga's Redis event target). Redis runs on 127.0.0.1:6379 here.
 */
const REDIS_URL = 'redis://127.0.0.1:6379';

let replicas: Replicas | undefined;
let a: TestGateway;
let b: ChildGateway;

beforeAll(async () => {
  replicas = await startReplicas({ env: { REDIS_URL }, maxConnections: 20 });
  ({ a, b } = replicas);
}, 120_000);

afterAll(async () => {
  await replicas?.stop();
});

/** entryChanged on one replica. */
const watch = (base: string, volumeId: string) =>
  subscribe<{ change: string; path: string }>(
    base,
    ADMIN_KEY,
    'subscription($v: ID!) { entryChanged(volumeId: $v) { change path } }',
    { v: volumeId },
    { keyParam: 'apiKey' },
  );

describe('replicas sharing Postgres and Redis', () => {
  it('a subscriber on one replica sees writes made through the other, both ways', async () => {
    const ws = (await call(a.url, 'POST', '/v1/orgs/rep/workspaces', { name: 'r' })).body.workspace_id;
    const vol = (await call(b.url, 'POST', `/v1/orgs/rep/workspaces/${ws}/volumes`, { name: 'v' })).body.volume.volume_id;
    const entries = `/v1/orgs/rep/workspaces/${ws}/volumes/${vol}/entries`;

    const onA = watch(a.url, vol);
    const onB = watch(b.url, vol);
    await Promise.all([onA.connected, onB.connected]);
    // Subscriptions register with Redis asynchronously: write until the first event arrives.
    let i = 0;
    const writer = setInterval(() => {
      void call(b.url, 'PUT', `${entries}/via-b-${i++}`, { content_text: 'x' });
    }, 100);
    const first = await onA.until((e) => e.length >= 1, 20_000).finally(() => clearInterval(writer));
    expect(first[0]).toMatchObject({ change: 'created' });
    expect(first[0]?.path).toMatch(/^\/via-b-\d+$/);

    const fromA = await call(a.url, 'PUT', `${entries}/via-a`, { content_text: 'y' });
    expect(fromA.status).toBe(201);
    const seenOnB = await onB.until((e) => e.some((x) => x.path === '/via-a'));
    expect(seenOnB.find((e) => e.path === '/via-a')).toEqual({ change: 'created', path: '/via-a' });
    await Promise.all([onA.close(), onB.close()]);
    expect([...onA.errors, ...onB.errors]).toEqual([]);
  }, 60_000);
});
