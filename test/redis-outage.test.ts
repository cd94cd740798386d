import { afterAll, beforeAll, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, putText } from './helpers/entries.js';
import { ADMIN_KEY, call } from './helpers/http.js';

// A gateway whose REDIS_URL points at nothing (Redis down or unreachable) keeps serving: events are
// not fanned out (logged), rate limits count per process. Before, the first published event became
// an unhandled rejection, which ends a Node process (and fails this file).

const ORG = 'org-redis-down';
let gw: TestGateway;

beforeAll(async () => {
  // Port 1 on loopback: connection refused at once, every time.
  gw = await startGateway({ REDIS_URL: 'redis://127.0.0.1:1', RATE_LIMIT_REQUESTS: '3', RATE_LIMIT_WINDOW_SECONDS: '600' });
});
afterAll(async () => {
  await gw?.stop();
});

it('writes (which publish events) and GraphQL keep working while Redis is unreachable', async () => {
  const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
  for (const p of ['/a.md', '/b.md', '/c.md']) await putText(gw, v, p);
  // A subscription asks Redis to subscribe: refused too, without taking the process down.
  const sse = await fetch(`${gw.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${ADMIN_KEY}` },
    body: JSON.stringify({ query: `subscription { entryChanged(volumeId: "${v.volumeId}") { path } }` }),
  });
  expect(sse.status).toBe(200);
  await sse.body?.cancel();
  await putText(gw, v, '/d.md');
  expect((await gw.gql('{ __typename }')).body).toEqual({ data: { __typename: 'Query' } });
  expect((await gw.call('GET', v.entry('/d.md'))).status).toBe(200);
});

it('rate limits fall back to counting in this process', async () => {
  const key = await createKey(gw, ORG, ['admin']);
  for (let i = 0; i < 3; i++) expect((await call(gw.url, 'GET', `/v1/orgs/${ORG}/workspaces`, undefined, { key })).status).toBe(200);
  expect((await call(gw.url, 'GET', `/v1/orgs/${ORG}/workspaces`, undefined, { key })).status).toBe(429);
});
