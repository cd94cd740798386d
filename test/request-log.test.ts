import { afterAll, beforeAll, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume } from './helpers/entries.js';
import { call } from './helpers/http.js';

// Every HTTP request gets an id (the client's X-Request-Id when sane, else a new one), returned on
// the response and in GraphQL errors, and one JSON access line when it ends: method, route template,
// status, duration, bytes, caller — and never a key, a header or a body.

const ORG = 'org-reqlog';
const logs: string[] = [];
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({ LOG_LEVEL: 'info' }, { logs });
});
afterAll(async () => {
  await gw?.stop();
});

const lines = () => logs.flatMap((l) => l.split('\n').filter(Boolean)).map((l) => JSON.parse(l) as Record<string, any>);
const accessLine = (id: string) => waitFor(async () => lines().find((l) => l.msg === 'request' && l.request_id === id));

it('returns the client X-Request-Id, or a new one; a malformed one is replaced', async () => {
  const own = await call(gw.url, 'GET', '/healthz', undefined, { key: null, headers: { 'x-request-id': 'trace-abc.123' } });
  expect(own.headers.get('x-request-id')).toBe('trace-abc.123');
  const made = await call(gw.url, 'GET', '/healthz', undefined, { key: null });
  expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  const long = await call(gw.url, 'GET', '/healthz', undefined, { key: null, headers: { 'x-request-id': 'x'.repeat(200) } });
  expect(long.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
});

it('logs one line per REST request with the route template and caller, and no key, header or content', async () => {
  const key = await createKey(gw, ORG, ['admin']);
  const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
  const secretText = 'the-entry-content-must-not-be-logged';
  const res = await call(gw.url, 'PUT', v.entry('/notes/a.md'), { content_text: secretText }, { key });
  expect(res.status).toBe(201);
  const id = res.headers.get('x-request-id') as string;
  const line = await accessLine(id);
  expect(line).toMatchObject({
    level: 30,
    method: 'PUT',
    route: '/v1/orgs/:org_id/workspaces/:workspace_id/volumes/:volume_id/entries/:path{.+}',
    status: 201,
    org: ORG,
    app: null,
  });
  expect(line.key_id).toMatch(/^[0-9a-f-]{36}$/);
  expect(line.duration_ms).toBeGreaterThan(0);
  expect(line.bytes_in).toBeGreaterThan(secretText.length);
  expect(line.bytes_out).toBeGreaterThan(0);
  const missing = await call(gw.url, 'GET', `/v1/orgs/${ORG}/workspaces/nope`, undefined, { key });
  expect((await accessLine(missing.headers.get('x-request-id') as string)).status).toBe(404);
  const all = logs.join('\n');
  expect(all).not.toContain(key);
  expect(all).not.toContain(secretText);
  expect(all.toLowerCase()).not.toContain('authorization');
});

it('GraphQL: the access line names the operation; errors carry the request id in extensions', async () => {
  const res = await call(
    gw.url,
    'POST',
    '/graphql',
    { query: 'mutation Missing($id: ID!) { deleteWorkspace(id: $id) { id } }', operationName: 'Missing', variables: { id: 'nope' } },
    { headers: { 'x-request-id': 'gql-req-1' } },
  );
  expect(res.headers.get('x-request-id')).toBe('gql-req-1');
  expect(res.body.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND', requestId: 'gql-req-1' });
  expect(await accessLine('gql-req-1')).toMatchObject({
    route: '/graphql',
    operation: 'Missing',
    status: 200,
    key_id: 'platform',
    errors: ['NOT_FOUND'],
  });
  // A document that does not validate never executes: its code is logged all the same.
  const bad = await call(gw.url, 'POST', '/graphql', { query: '{ noSuchField }' }, { headers: { 'x-request-id': 'gql-req-2' } });
  expect(bad.body.errors?.[0]).toBeDefined();
  expect((await accessLine('gql-req-2')).errors).toHaveLength(1);
  const ok = await call(gw.url, 'POST', '/graphql', { query: '{ __typename }' }, { headers: { 'x-request-id': 'gql-req-3' } });
  expect(ok.status).toBe(200);
  expect((await accessLine('gql-req-3')).errors).toBeUndefined();
});
