import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, jobsIdle, startGateway, type TestGateway } from './helpers/app.js';
import { newVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

// Two gateways in one process, each with its own PGlite database, blob store and settings. Before
// the runtime object, the database, blob store, event bus and limits were module singletons set by
// `createApp`, so the second gateway would have silently taken over the first one's database.

const OTHER_ADMIN_KEY = 'second-gateway-admin-key-0123456789';
let a: TestGateway;
let b: TestGateway;
beforeAll(async () => {
  [a, b] = await Promise.all([
    startGateway({ GRAPHQL_MAX_DEPTH: '12' }),
    startGateway({ GRAPHQL_MAX_DEPTH: '4', ADMIN_API_KEY: OTHER_ADMIN_KEY }),
  ]);
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
});

describe('two gateways in one process', () => {
  it('each writes to, indexes in and searches its own database', async () => {
    const va = await newVolume(a, 'acme');
    const vb = await newVolume(b, 'acme', {}).catch(() => null);
    // B has another admin key: A's key means nothing there.
    expect(vb).toBeNull();
    const vbOwn = await (async () => {
      const ws = await b.call('POST', '/v1/orgs/acme/workspaces', { name: 'b-ws' }, OTHER_ADMIN_KEY);
      expect(ws.status).toBe(201);
      const vol = await b.call('POST', `/v1/orgs/acme/workspaces/${ws.body.workspace_id}/volumes`, { name: 'b-vol' }, OTHER_ADMIN_KEY);
      expect(vol.status).toBe(201);
      return `/v1/orgs/acme/workspaces/${ws.body.workspace_id}/volumes/${vol.body.volume.volume_id}`;
    })();

    expect((await a.call('PUT', va.entry('/a.md'), { content_text: 'glaciers carve fjords in the north' })).status).toBe(201);
    expect((await b.call('PUT', `${vbOwn}/entries/b.md`, { content_text: 'coral reefs in warm seas' }, OTHER_ADMIN_KEY)).status).toBe(201);

    // A's volume does not exist in B's database, and the other way round.
    expect((await b.call('GET', va.entry('/a.md'), undefined, OTHER_ADMIN_KEY)).status).toBe(404);
    expect((await a.call('GET', `${vbOwn}/entries/b.md`)).status).toBe(404);

    // Each gateway's job runner indexes its own entry, against its own database.
    await indexed(a, va.volumeId, 1);
    await indexed(b, vbOwn.split('/').at(-1)!, 1);
    await Promise.all([jobsIdle(a), jobsIdle(b)]);
    expect(await a.app.database.prisma.entry.count()).toBe(1);
    expect(await b.app.database.prisma.entry.count()).toBe(1);

    const hitsA = await a.call('POST', `${va.volumeUrl}/search`, { query: 'glaciers', mode: 'keyword' });
    const hitsB = await b.call('POST', `${vbOwn}/search`, { query: 'glaciers', mode: 'keyword' }, OTHER_ADMIN_KEY);
    expect(hitsA.body.results.map((r: { path: string }) => r.path)).toEqual(['/a.md']);
    expect(hitsB.body.results).toEqual([]);
  });

  it('each applies its own GraphQL limits', async () => {
    const q = '{ workspaces(orgId: "acme") { edges { node { volumes { edges { node { id } } } } } } }';
    const resA = await a.gql(q);
    expect(resA.body.errors).toBeUndefined();
    const resB = await b.gql(q, {}, OTHER_ADMIN_KEY);
    expect(resB.body.errors[0].extensions).toMatchObject({ code: 'QUERY_TOO_COMPLEX', maxDepth: 4 });
    // A's admin key is not B's.
    expect((await b.gql('{ viewer { kind } }', {}, ADMIN_KEY)).body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it("one gateway's events never reach the other's subscribers", async () => {
    const va = await newVolume(a, 'acme');
    const onA = a.app.runtime.events.subscribe('entryChanged', va.volumeId)[Symbol.asyncIterator]();
    const onB = b.app.runtime.events.subscribe('entryChanged', va.volumeId)[Symbol.asyncIterator]();
    const nextA = onA.next();
    const nextB = onB.next();
    expect((await a.call('PUT', va.entry('/e.md'), { content_text: 'hello' })).status).toBe(201);
    expect((await nextA).value).toMatchObject({ volumeId: va.volumeId, path: '/e.md', change: 'created' });
    // B's subscriber sees B's own sentinel first: A's write never went through B's bus.
    const sentinel = {
      volumeId: va.volumeId,
      entryId: 'sentinel',
      path: '/sentinel',
      change: 'created',
      version: 1,
      previousPath: null,
    } as const;
    b.app.runtime.events.publish('entryChanged', va.volumeId, sentinel);
    expect((await nextB).value).toEqual(sentinel);
    await onA.return?.();
    await onB.return?.();
  });

  it('stopping one leaves the other serving', async () => {
    const c = await startGateway();
    await c.stop();
    expect((await a.call('GET', '/healthz')).status).toBe(200);
    expect((await b.call('GET', '/healthz')).status).toBe(200);
  });
});
