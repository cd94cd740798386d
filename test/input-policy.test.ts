import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataExceptionAsValidation } from '../src/domain/shared/errors.js';
import { startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { upload, uploadVolume } from './helpers/uploads.js';

/**
 * One input policy at the edge of both transports (src/domain/input-policy.ts): every reported way
 * of getting a 500 (or a silently mangled value) out of bad input now answers 4xx naming the field,
 * and writes nothing.
 */
let gw: TestGateway;
let v: TestVolume;
beforeAll(async () => {
  gw = await startGateway();
  v = await newVolume(gw, 'policy');
});
afterAll(() => gw?.stop());

const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
const gqlResponse = (query: string, variables?: unknown) =>
  fetch(`${gw.url}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      authorization: 'Bearer test-admin-key-0123456789abcdef',
    },
    body: JSON.stringify({ query, variables }),
  });

describe('REST', () => {
  it('JSON nested past 64 levels is 422 on every JSON route, however deep (5,000 used to be a 500)', async () => {
    for (const [method, route, body] of [
      ['PUT', v.entry('/deep.json'), `{"content": ${deep(5000)}}`],
      ['POST', '/v1/orgs/policy/workspaces', `{"name": "x", "tags": ${deep(5000)}}`],
      ['POST', `${v.volumeUrl}/search`, `{"query": "x", "filters": {"metadata": {"a": ${deep(3000)}}}}`],
    ] as const) {
      const res = await gw.call(method, route, body);
      expect(res.status, route).toBe(422);
      expect(res.body.detail[0]).toMatchObject({ type: 'json_too_deep', msg: 'must not be nested deeper than 64 levels' });
    }
    expect((await gw.call('GET', v.entry('/deep.json'))).status).toBe(404);
  });

  it('unpaired surrogates and NUL are 422 naming the field, in values and keys, never stored or turned into U+FFFD', async () => {
    const cases: [string, string, string, (string | number)[], string][] = [
      ['PUT', v.entry('/s.json'), '{"content": {"a": "\\ud800"}}', ['body', 'content', 'a'], 'string_unicode'],
      ['PUT', v.entry('/s.json'), '{"content_text": "x", "metadata": {"\\ud800": 1}}', ['body', 'metadata', '\ud800'], 'string_unicode'],
      ['PUT', v.entry('/s.json'), '{"content_text": "a\\udc00b"}', ['body', 'content_text'], 'string_unicode'],
      ['POST', '/v1/orgs/policy/workspaces', '{"name": "a\\ud800b"}', ['body', 'name'], 'string_unicode'],
      ['POST', '/v1/orgs/policy/workspaces', '{"name": "ok", "description": "a\\u0000"}', ['body', 'description'], 'string_nul'],
      [
        'POST',
        `${v.volumeUrl}/search`,
        '{"query": "x", "filters": {"metadata": {"a\\u0000": "b"}}}',
        ['body', 'filters', 'metadata', 'a\u0000'],
        'string_nul',
      ],
      [
        'POST',
        `${v.volumeUrl}/search`,
        '{"query": "x", "filters": {"metadata": {"a": "\\udc00"}}}',
        ['body', 'filters', 'metadata', 'a'],
        'string_unicode',
      ],
      ['POST', `${v.volumeUrl}/search`, '{"query": "x\\ud800"}', ['body', 'query'], 'string_unicode'],
    ];
    for (const [method, route, body, loc, type] of cases) {
      const res = await gw.call(method, route, body);
      expect(res.status, body).toBe(422);
      expect(res.body.detail, body).toEqual([expect.objectContaining({ loc, type })]);
    }
    expect((await gw.call('GET', v.entry('/s.json'))).status).toBe(404);
    const names = (await gw.call('GET', '/v1/orgs/policy/workspaces')).body.workspaces.map((w: { name: string }) => w.name);
    expect(names.some((n: string) => n.includes('\ufffd'))).toBe(false);
  });

  it('an upload whose metadata field holds an unpaired surrogate is 422 and leaves no entry or object', async () => {
    const u = await uploadVolume(gw, 'policy-files');
    const res = await upload(gw, u.upload('/f.bin'), { data: Buffer.from('bytes'), filename: 'f.bin' }, { metadata: '{"k": "\\ud800"}' });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.detail[0]).toMatchObject({ loc: ['body', 'metadata', 'k'], type: 'string_unicode' });
    expect((await gw.call('GET', u.entry('/f.bin'))).status).toBe(404);
  });

  it('a crafted list cursor is 422, not a 500', async () => {
    const crafted = Buffer.from(JSON.stringify({ v: 1, p: '/\u0000' })).toString('base64url');
    for (const cursor of [crafted, 'eyJ2IjoxLCJwIjoiL1x1MDAwMCJ9', Buffer.from('{"v":1,"p":"/a/../b"}').toString('base64url')]) {
      const res = await gw.call('GET', `${v.volumeUrl}/list?cursor=${cursor}`);
      expect(res.status, cursor).toBe(422);
      expect(res.body.detail[0]).toMatchObject({ loc: ['query', 'cursor'], type: 'cursor_invalid' });
    }
  });

  it('query numbers are parsed strictly and the same way everywhere; a repeated parameter is 422', async () => {
    const routes = [
      `${v.volumeUrl}/list`,
      '/v1/orgs/policy/workspaces',
      `/v1/orgs/policy/workspaces/${v.workspaceId}/volumes`,
      '/v1/orgs/policy/api-keys',
    ];
    for (const route of routes) {
      for (const bad of ['0x10', '5%20', '%205', '1e1', '5.0', '']) {
        const res = await gw.call('GET', `${route}?limit=${bad}`);
        expect(res.status, `${route}?limit=${bad}`).toBe(422);
        expect(res.body.detail[0]).toMatchObject({ loc: ['query', 'limit'] });
      }
      const twice = await gw.call('GET', `${route}?limit=5&limit=6`);
      expect(twice.status, route).toBe(422);
      expect(twice.body.detail[0]).toMatchObject({ loc: ['query', 'limit'], type: 'duplicate_parameter', input: ['5', '6'] });
      expect((await gw.call('GET', `${route}?limit=5`)).status, route).toBe(200);
    }
    // List parameters may repeat.
    expect((await gw.call('GET', '/v1/orgs/policy/workspaces?tags=a&tags=b')).status).toBe(200);
    expect((await gw.call('GET', `${v.entry('/x')}/download?expires_in=0x100`)).body.detail[0]).toMatchObject({
      loc: ['query', 'expires_in'],
    });
  });
});

describe('GraphQL', () => {
  it('a selection nested 2,000 deep is refused before parsing (it overflowed the parser)', async () => {
    const res = await gqlResponse(`{${'a{'.repeat(2000)}b${'}'.repeat(2001)}`);
    expect(res.status).toBe(400);
    const body = await res.json();
    expect(body.errors).toEqual([
      expect.objectContaining({ message: 'Document is nested deeper than 128 levels', extensions: { code: 'QUERY_TOO_COMPLEX' } }),
    ]);
  });

  it('variables and literals holding NUL or unpaired surrogates are BAD_USER_INPUT naming the variable', async () => {
    const createWs = 'mutation($i: CreateWorkspaceInput!) { createWorkspace(orgId: "policy", input: $i) { id } }';
    const bad = await gqlResponse(createWs, { i: { name: 'a\ud800' } });
    expect(bad.status).toBe(400);
    expect((await bad.json()).errors[0]).toMatchObject({
      message: 'Variable "$i" got invalid value at "i.name"; must be well-formed Unicode (no unpaired surrogates)',
      extensions: { code: 'BAD_USER_INPUT' },
    });
    const nulLiteral = await gqlResponse('mutation { createWorkspace(orgId: "policy", input: { name: "a\\u0000" }) { id } }');
    expect((await nulLiteral.json()).errors[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
    const write = await gqlResponse(
      `mutation($v: ID!, $i: WriteEntryInput!) { writeEntry(volumeId: $v, path: "/g.json", input: $i) { __typename } }`,
      {
        v: v.volumeId,
        i: { content: { deep: JSON.parse(deep(100)) } },
      },
    );
    expect((await write.json()).errors[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
    const search = await gqlResponse(`query($v: ID!, $f: SearchFilters) { search(volumeId: $v, query: "x", filters: $f) { total } }`, {
      v: v.volumeId,
      f: { metadata: { 'k\u0000': 1 } },
    });
    expect((await search.json()).errors[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
    expect((await gw.call('GET', v.entry('/g.json'))).status).toBe(404);
  });
});

describe('database data exceptions', () => {
  it('SQLSTATE class 22 from the real database maps to a validation error, never a 500', async () => {
    const err = await gw.app.database.prisma.$queryRawUnsafe('SELECT $1::text', 'a\u0000').catch((e: unknown) => e);
    const mapped = dataExceptionAsValidation(err);
    expect(mapped?.issues[0]).toMatchObject({ loc: ['body'], ctx: { sqlstate: '22021' } });
    const other = await gw.app.database.prisma.$queryRawUnsafe('SELECT * FROM no_such_table').catch((e: unknown) => e);
    expect(dataExceptionAsValidation(other)).toBeUndefined();
  });
});
