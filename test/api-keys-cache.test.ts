import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume } from './helpers/entries.js';
import { call } from './helpers/http.js';
import { type Replicas, startReplicas } from './helpers/replicas.js';

// API key lookups are cached per gateway (KEY_CACHE_TTL_MS); revoking a key evicts it at once on
// every replica through the event bus (Redis between replicas). The TTL here is a minute, so only
// the event can explain a refusal within a second.

const REDIS_URL = 'redis://127.0.0.1:6379';
const ENV = { REDIS_URL, KEY_CACHE_TTL_MS: '60000' };

describe('one gateway', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ KEY_CACHE_TTL_MS: '60000' });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('looks a key up once, not on every request, and refuses it right after it is revoked', async () => {
    const key = await createKey(gw, 'cache-one', ['workspaces:read']);
    expect((await gw.call('GET', '/v1/orgs/cache-one/workspaces', undefined, key)).status).toBe(200);
    gw.queries.length = 0;
    for (let i = 0; i < 5; i++) expect((await gw.call('GET', '/v1/orgs/cache-one/workspaces', undefined, key)).status).toBe(200);
    expect(gw.queries.filter((q) => /"api_keys"/.test(q))).toEqual([]);

    const keyId = (await gw.call('GET', '/v1/orgs/cache-one/api-keys')).body.api_keys[0].key_id;
    expect((await gw.call('DELETE', `/v1/orgs/cache-one/api-keys/${keyId}`)).status).toBe(200);
    expect((await gw.call('GET', '/v1/orgs/cache-one/workspaces', undefined, key)).status).toBe(401);
    expect((await gw.gql('{ viewer { kind } }', {}, key)).body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it("ends the revoked key's open subscriptions over SSE with UNAUTHENTICATED", async () => {
    const v = await newVolume(gw, 'cache-sse');
    const key = await createKey(gw, 'cache-sse', ['entries:read']);
    const res = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: 'subscription($v: ID!) { entryChanged(volumeId: $v) { path } }', variables: { v: v.volumeId } }),
    });
    // The answer has started: the subscription (and its revocation watch) is open.
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const body = res.text();
    const keyId = (await gw.call('GET', '/v1/orgs/cache-sse/api-keys')).body.api_keys[0].key_id;
    expect((await gw.call('DELETE', `/v1/orgs/cache-sse/api-keys/${keyId}`)).status).toBe(200);
    const text = await body; // the stream ends; before this change it stayed open
    const events = text
      .split('\n')
      .filter((l) => l.startsWith('data:') && l.includes('{'))
      .map((l) => JSON.parse(l.slice(5)));
    expect(events.at(-1).errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect(text).toContain('event: complete');
  });

  it('an unknown key is asked of the database every time (nothing cached for it)', async () => {
    gw.queries.length = 0;
    for (let i = 0; i < 3; i++) expect((await gw.call('GET', '/v1/orgs/cache-one/workspaces', undefined, 'no-such-key')).status).toBe(401);
    expect(gw.queries.filter((q) => /"api_keys"/.test(q))).toHaveLength(3);
  });
});

describe('two replicas', () => {
  let replicas: Replicas | undefined;
  beforeAll(async () => {
    replicas = await startReplicas({ env: ENV, maxConnections: 20 });
  }, 120_000);
  afterAll(async () => {
    await replicas?.stop();
  });

  for (const [revokeOn, checkOn] of [
    ['a', 'b'],
    ['b', 'a'],
  ] as const) {
    it(`a key revoked through replica ${revokeOn.toUpperCase()} stops working on ${checkOn.toUpperCase()} within a second`, async () => {
      const r = replicas as Replicas;
      const org = `cache-${revokeOn}${checkOn}`;
      const key = await createKey(r.a, org, ['workspaces:read']);
      const urlOf = { a: r.a.url, b: r.b.url };
      // Both replicas have the key cached.
      for (const url of Object.values(urlOf))
        expect((await call(url, 'GET', `/v1/orgs/${org}/workspaces`, undefined, { key })).status).toBe(200);

      const keyId = (await call(urlOf[revokeOn], 'GET', `/v1/orgs/${org}/api-keys`)).body.api_keys[0].key_id;
      expect((await call(urlOf[revokeOn], 'DELETE', `/v1/orgs/${org}/api-keys/${keyId}`)).status).toBe(200);
      const revokedAt = Date.now();
      expect((await call(urlOf[revokeOn], 'GET', `/v1/orgs/${org}/workspaces`, undefined, { key })).status).toBe(401);
      await waitFor(async () => (await call(urlOf[checkOn], 'GET', `/v1/orgs/${org}/workspaces`, undefined, { key })).status === 401, 1000);
      expect(Date.now() - revokedAt).toBeLessThan(1000);
    });
  }

  it("closes the revoked key's open WebSockets on the other replica (4403)", async () => {
    const r = replicas as Replicas;
    const key = await createKey(r.a, 'cache-ws', ['workspaces:read']);
    const socket = new WebSocket(`${r.a.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    await once(socket, 'open');
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${key}` } }));
    const [ack] = await once(socket, 'message');
    expect(JSON.parse(String(ack)).type).toBe('connection_ack');
    const closed = once(socket, 'close');

    const keyId = (await call(r.b.url, 'GET', '/v1/orgs/cache-ws/api-keys')).body.api_keys[0].key_id;
    expect((await call(r.b.url, 'DELETE', `/v1/orgs/cache-ws/api-keys/${keyId}`)).status).toBe(200);
    const [code, reason] = await closed;
    expect(code).toBe(4403);
    expect(String(reason)).toBe('API key revoked');
  });
});
