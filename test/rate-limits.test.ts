import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';
import { wsClient } from './helpers/graphql-ws.js';
import { call } from './helpers/http.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';
import { upload, uploadVolume } from './helpers/uploads.js';

// Per-key rate limits: requests (REST, GraphQL over HTTP, each graphql-ws operation) and upload
// bytes per window, answered 429 RATE_LIMITED with Retry-After; shared by replicas through Redis.

const ORG = 'org-limits';
const REDIS_URL = 'redis://127.0.0.1:6379';

describe('requests per key', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ RATE_LIMIT_REQUESTS: '4', RATE_LIMIT_WINDOW_SECONDS: '600', RATE_LIMIT_UPLOAD_BYTES: '1000' });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('REST: the request past the budget is answered 429 RATE_LIMITED with Retry-After; other keys and the platform key go on', async () => {
    const key = await createKey(gw, ORG, ['admin']);
    const other = await createKey(gw, ORG, ['admin']);
    for (let i = 0; i < 4; i++) expect((await call(gw.url, 'GET', `/v1/orgs/${ORG}/workspaces`, undefined, { key })).status).toBe(200);
    const refused = await call(gw.url, 'GET', `/v1/orgs/${ORG}/workspaces`, undefined, { key });
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(600);
    expect(refused.body).toMatchObject({
      error: 'RATE_LIMITED',
      details: { limit: 'requests', max: 4, window_seconds: 600, retry_after_seconds: retryAfter },
    });
    // A refused request is not charged again: still refused, same envelope.
    expect((await call(gw.url, 'POST', `/v1/orgs/${ORG}/workspaces`, { name: 'x' }, { key })).status).toBe(429);
    expect((await call(gw.url, 'GET', `/v1/orgs/${ORG}/workspaces`, undefined, { key: other })).status).toBe(200);
    for (let i = 0; i < 6; i++) expect((await gw.call('GET', `/v1/orgs/${ORG}/workspaces`)).status).toBe(200);
  });

  it('GraphQL over HTTP: 429 with Retry-After and extensions.code RATE_LIMITED', async () => {
    const key = await createKey(gw, ORG, ['admin']);
    for (let i = 0; i < 4; i++) expect((await gw.gql('{ __typename }', {}, key)).status).toBe(200);
    const res = await call(gw.url, 'POST', '/graphql', { query: '{ __typename }' }, { key });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(res.body.errors[0].extensions).toMatchObject({ code: 'RATE_LIMITED', limit: 'requests', max: 4 });
    expect(res.body.data ?? null).toBeNull();
  });

  it('graphql-ws: each operation counts; the one past the budget gets an error RATE_LIMITED and the socket stays', async () => {
    const key = await createKey(gw, ORG, ['admin']);
    const client = wsClient(gw.url, key);
    try {
      const run = () =>
        new Promise<any>((resolve) => {
          const out: any[] = [];
          client.subscribe(
            { query: '{ __typename }' },
            { next: (m) => out.push(m), error: (e) => resolve({ error: e }), complete: () => resolve({ results: out }) },
          );
        });
      for (let i = 0; i < 4; i++) expect((await run()).results?.[0]?.data).toEqual({ __typename: 'Query' });
      const refused = await run();
      expect(refused.error?.[0]?.extensions).toMatchObject({ code: 'RATE_LIMITED', limit: 'requests' });
      // Not the connection's end: the platform key is unlimited on another socket, and this one is still open.
      expect((await gw.gql('{ __typename }')).status).toBe(200);
    } finally {
      await client.dispose();
    }
  });

  it('upload bytes: an upload that finds the budget spent is refused before it streams', async () => {
    const key = await createKey(gw, ORG, ['admin']);
    const v = await uploadVolume(gw, ORG, { indexing_mode: 'manual' });
    // Three requests left for this key: two uploads of 600 bytes (the second overruns the 1000-byte budget), then a refusal.
    expect((await upload(gw, v.upload('/a.bin'), { data: Buffer.alloc(600, 1) }, {}, { key })).status).toBe(201);
    expect((await upload(gw, v.upload('/b.bin'), { data: Buffer.alloc(600, 2) }, {}, { key })).status).toBe(201);
    const refused = await upload(gw, v.upload('/c.bin'), { data: Buffer.alloc(10, 3) }, {}, { key });
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ error: 'RATE_LIMITED', details: { limit: 'upload_bytes', max: 1000 } });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await gw.call('GET', v.entry('/c.bin'))).status).toBe(404);
    // Counted on /metrics.
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/rate_limited_total\{limit="upload_bytes",transport="rest"\} 1/);
    expect(metrics).toMatch(/rate_limited_total\{limit="requests",transport="rest"\} [1-9]/);
  });
});

describe('replicas share one budget through Redis', () => {
  let db: PgliteServer;
  let a: TestGateway;
  let b: TestGateway;
  beforeAll(async () => {
    db = await startPgliteServer(20);
    const env = { DATABASE_URL: db.url, REDIS_URL, RATE_LIMIT_REQUESTS: '4', RATE_LIMIT_WINDOW_SECONDS: '600', DATABASE_POOL_SIZE: '4' };
    a = await startGateway(env);
    b = await startGateway(env);
  }, 120_000);
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
    await db?.stop();
  });

  it('two requests on each replica spend the budget; the next is refused on either', async () => {
    const key = await createKey(a, ORG, ['admin']);
    for (const gw of [a, b, a, b]) expect((await call(gw.url, 'GET', `/v1/orgs/${ORG}/workspaces`, undefined, { key })).status).toBe(200);
    expect((await call(a.url, 'GET', `/v1/orgs/${ORG}/workspaces`, undefined, { key })).status).toBe(429);
    expect((await call(b.url, 'GET', `/v1/orgs/${ORG}/workspaces`, undefined, { key })).status).toBe(429);
  });
});
