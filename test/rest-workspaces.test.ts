import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';

const WORKSPACE_FIELDS = [
  'workspace_id',
  'name',
  'description',
  'owner_id',
  'subscription_plan_id',
  'is_active',
  'tags',
  'region',
  's3_bucket',
  'bucket_status',
  'bucket_error',
  'created_at',
  'updated_at',
];
const ERROR_FIELDS = ['error', 'message', 'details', 'timestamp', 'status_code'];

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.stop();
});

describe('workspaces REST', () => {
  it('creates a workspace with every field and provisions its bucket in the background', async () => {
    const res = await gw.call('POST', '/v1/orgs/acme/workspaces', {
      organization_id: 'acme',
      name: 'Research',
      description: 'papers',
      subscription_plan_id: 'pro',
      tags: ['ml', 'ml', 'papers'],
    });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body)).toEqual(WORKSPACE_FIELDS);
    expect(res.body).toMatchObject({
      name: 'Research',
      description: 'papers',
      owner_id: 'admin',
      subscription_plan_id: 'pro',
      is_active: true,
      tags: ['ml', 'papers'],
      region: 'us-east-1',
      bucket_status: 'pending',
    });
    expect(res.body.s3_bucket).toBe(`vg-${res.body.workspace_id}`);
    expect(new Date(res.body.created_at).toISOString()).toBe(res.body.created_at);

    const active = await waitFor(async () => {
      const got = await gw.call('GET', `/v1/orgs/acme/workspaces/${res.body.workspace_id}`);
      return got.body.bucket_status === 'active' ? got.body : undefined;
    });
    expect(active.bucket_error).toBeNull();
    const stat = await fs.stat(path.join(gw.dataDir, 'blobs', res.body.s3_bucket));
    expect(stat.isDirectory()).toBe(true);
  });

  it('lists with limit and opaque cursors until has_more is false', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await gw.call('POST', '/v1/orgs/pager/workspaces', { name: `ws-${i}` })).status).toBe(201);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = await gw.call('GET', `/v1/orgs/pager/workspaces${q}`);
      expect(page.status).toBe(200);
      expect(Object.keys(page.body)).toEqual(['total', 'has_more', 'next_cursor', 'workspaces']);
      expect(page.body.total).toBe(5);
      seen.push(...page.body.workspaces.map((w: { name: string }) => w.name));
      cursor = page.body.next_cursor;
      expect(page.body.has_more).toBe(cursor !== null);
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(['ws-0', 'ws-1', 'ws-2', 'ws-3', 'ws-4']);

    const all = await gw.call('GET', '/v1/orgs/pager/workspaces');
    expect(all.body.workspaces).toHaveLength(5);
    expect(all.body).toMatchObject({ total: 5, has_more: false, next_cursor: null });
  });

  it('updates only the given fields', async () => {
    const created = await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'Before', description: 'keep' });
    const id = created.body.workspace_id;
    const res = await gw.call('PUT', `/v1/orgs/acme/workspaces/${id}`, { name: 'After', is_active: false, tags: ['x'] });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ name: 'After', description: 'keep', is_active: false, tags: ['x'] });
    const cleared = await gw.call('PUT', `/v1/orgs/acme/workspaces/${id}`, { description: null });
    expect(cleared.body.description).toBeNull();
    expect(cleared.body.name).toBe('After');
  });

  it('deletes a workspace with its volumes, mounts and bucket, leaving no rows or objects', async () => {
    const ws = (await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'Doomed' })).body;
    await waitFor(async () => (await gw.call('GET', `/v1/orgs/acme/workspaces/${ws.workspace_id}`)).body.bucket_status === 'active');
    const vol = (await gw.call('POST', `/v1/orgs/acme/workspaces/${ws.workspace_id}/volumes`, { name: 'v' })).body.volume;
    await gw.call('POST', `/v1/orgs/acme/workspaces/${ws.workspace_id}/volumes/${vol.volume_id}/mounts`, { app_id: 'bot' });

    const res = await gw.call('DELETE', `/v1/orgs/acme/workspaces/${ws.workspace_id}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ message: 'Workspace deleted successfully' });

    expect((await gw.call('GET', `/v1/orgs/acme/workspaces/${ws.workspace_id}`)).status).toBe(404);
    expect((await gw.call('GET', `/v1/orgs/acme/workspaces/${ws.workspace_id}/volumes/${vol.volume_id}`)).status).toBe(404);
    const rows = await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
      'SELECT (SELECT count(*) FROM volumes WHERE workspace_id = $1)::int + (SELECT count(*) FROM mounts WHERE volume_id = $2)::int AS n',
      ws.workspace_id,
      vol.volume_id,
    );
    expect(rows[0]?.n).toBe(0);
    await expect(fs.stat(path.join(gw.dataDir, 'blobs', ws.s3_bucket))).rejects.toThrow();
    expect((await gw.call('DELETE', `/v1/orgs/acme/workspaces/${ws.workspace_id}`)).status).toBe(404);
  });
});

describe('organisations come into being with their first workspace or key, never on a read', () => {
  const orgs = (id: string) => gw.app.database.prisma.organization.count({ where: { id } });

  it('a platform key reading an unknown organisation gets empty lists and 404s, and creates nothing', async () => {
    expect((await gw.call('GET', '/v1/orgs/typo-org/workspaces')).body).toMatchObject({ workspaces: [] });
    expect((await gw.call('GET', '/v1/orgs/typo-org/api-keys')).status).toBe(200);
    expect((await gw.call('GET', '/v1/orgs/typo-org/workspaces/00000000-0000-7000-8000-000000000000')).status).toBe(404);
    const gql = await gw.gql('{ workspaces(orgId: "typo-org") { totalCount edges { node { id } } } }');
    expect(gql.body).toEqual({ data: { workspaces: { totalCount: 0, edges: [] } } });
    expect(await orgs('typo-org')).toBe(0);
  });

  it('a refused create leaves no organisation behind; a good one makes it', async () => {
    expect((await gw.call('POST', '/v1/orgs/new-org/api-keys', { name: '', scopes: ['nope'] })).status).toBe(422);
    expect((await gw.call('POST', '/v1/orgs/new-org/workspaces', { name: '' })).status).toBe(422);
    expect(await orgs('new-org')).toBe(0);
    expect((await gw.call('POST', '/v1/orgs/new-org/api-keys', { name: 'ci', scopes: ['entries:read'] })).status).toBe(201);
    expect(await orgs('new-org')).toBe(1);
    expect((await gw.call('POST', '/v1/orgs/new-org-2/workspaces', { name: 'first' })).status).toBe(201);
    expect(await orgs('new-org-2')).toBe(1);
  });
});

describe('workspaces REST errors', () => {
  it('401 without or with a bad key, in the legacy envelope', async () => {
    for (const key of [null, 'not-a-key']) {
      const res = await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, key);
      expect(res.status).toBe(401);
      expect(Object.keys(res.body)).toEqual(ERROR_FIELDS);
      expect(res.body).toMatchObject({ error: 'AUTHENTICATION_FAILED', message: 'Authentication required', details: {}, status_code: 401 });
      expect(res.body.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    }
  });

  it('accepts X-API-Key as well as Bearer', async () => {
    const res = await fetch(`${gw.url}/v1/orgs/acme/workspaces`, { headers: { 'x-api-key': 'test-admin-key-0123456789abcdef' } });
    expect(res.status).toBe(200);
  });

  it('403 names the missing scope; another org is 404 for every route', async () => {
    const reader = await createKey(gw, 'acme', ['workspaces:read']);
    const denied = await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'x' }, reader);
    expect(denied.status).toBe(403);
    expect(denied.body).toMatchObject({ error: 'FORBIDDEN', details: { required_permission: 'workspaces:write' }, status_code: 403 });

    const noRead = await createKey(gw, 'acme', ['volumes:read']);
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, noRead)).body.details).toEqual({
      required_permission: 'workspaces:read',
    });

    const other = (await gw.call('POST', '/v1/orgs/globex/workspaces', { name: 'secret' })).body.workspace_id;
    const acmeAdmin = await createKey(gw, 'acme', ['admin']);
    for (const [method, route, body] of [
      ['GET', '/v1/orgs/globex/workspaces'],
      ['POST', '/v1/orgs/globex/workspaces', { name: 'x' }],
      ['GET', `/v1/orgs/globex/workspaces/${other}`],
      ['PUT', `/v1/orgs/globex/workspaces/${other}`, { name: 'pwned' }],
      ['DELETE', `/v1/orgs/globex/workspaces/${other}`],
      ['GET', `/v1/orgs/acme/workspaces/${other}`],
      ['PUT', `/v1/orgs/acme/workspaces/${other}`, { name: 'pwned' }],
      ['DELETE', `/v1/orgs/acme/workspaces/${other}`],
    ] as [string, string, unknown?][]) {
      const res = await gw.call(method, route, body, acmeAdmin);
      expect(res.status, `${method} ${route}`).toBe(404);
      expect(res.body.error).toBe('RESOURCE_NOT_FOUND');
    }
    expect((await gw.call('GET', `/v1/orgs/globex/workspaces/${other}`)).body.name).toBe('secret');
  });

  it('422 in the exact detail format, naming the field, and writes nothing', async () => {
    const before = (await gw.call('GET', '/v1/orgs/badinput/workspaces')).body.total;
    const cases: [unknown, (string | number)[], string][] = [
      [{}, ['body', 'name'], 'missing'],
      [{ name: 42 }, ['body', 'name'], 'string_type'],
      [{ name: 'x'.repeat(256) }, ['body', 'name'], 'string_too_long'],
      [{ name: 'ok', tags: ['y'.repeat(65)] }, ['body', 'tags', 0], 'string_too_long'],
      [{ name: 'ok', tags: 'nope' }, ['body', 'tags'], 'list_type'],
      [{ name: 'ok', is_active: 'yes' }, ['body', 'is_active'], 'bool_type'],
      [{ name: 'ok', organization_id: 'someone-else' }, ['body', 'organization_id'], 'value_error'],
      [[1, 2], ['body'], 'dict_type'],
    ];
    for (const [body, loc, type] of cases) {
      const res = await gw.call('POST', '/v1/orgs/badinput/workspaces', body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      const item = res.body.detail[0];
      expect(Object.keys(item)).toEqual(['loc', 'msg', 'type', 'input', 'ctx']);
      expect(item.loc).toEqual(loc);
      expect(item.type).toBe(type);
    }
    const form = await fetch(`${gw.url}/v1/orgs/badinput/workspaces`, {
      method: 'POST',
      headers: { authorization: 'Bearer test-admin-key-0123456789abcdef', 'content-type': 'text/plain' },
      body: '{"name":"x"}',
    });
    expect(form.status).toBe(422);
    expect((await form.json()).detail[0]).toMatchObject({ loc: ['body'], type: 'content_type', input: 'text/plain' });
    const malformed = await gw.call('POST', '/v1/orgs/badinput/workspaces', '{"name": ');
    expect(malformed.status).toBe(422);
    expect(malformed.body.detail[0]).toMatchObject({ loc: ['body'], type: 'json_invalid' });
    expect((await gw.call('GET', '/v1/orgs/badinput/workspaces')).body.total).toBe(before);
  });

  it('422 for limits out of range and cursors it did not issue', async () => {
    for (const q of ['limit=0', 'limit=201', 'limit=abc', 'limit=1.5']) {
      const res = await gw.call('GET', `/v1/orgs/acme/workspaces?${q}`);
      expect(res.status, q).toBe(422);
      expect(res.body.detail[0].loc).toEqual(['query', 'limit']);
    }
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces?limit=200')).status).toBe(200);
    for (const cursor of ['garbage', Buffer.from('{"v":1,"id":"x"}').toString('base64url')]) {
      const res = await gw.call('GET', `/v1/orgs/acme/workspaces?cursor=${cursor}`);
      expect(res.status).toBe(422);
      expect(res.body.detail[0]).toMatchObject({ loc: ['query', 'cursor'], type: 'cursor_invalid' });
    }
    const badOrg = await gw.call('GET', '/v1/orgs/bad%20org/workspaces');
    expect(badOrg.status).toBe(422);
    expect(badOrg.body.detail[0].loc).toEqual(['path', 'org_id']);
  });

  it('unknown routes answer the 404 envelope; oversized bodies 413', async () => {
    const res = await gw.call('GET', '/v1/nothing/here');
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ error: 'RESOURCE_NOT_FOUND', status_code: 404 });
    const big = await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'x', description: 'y'.repeat(2 * 1024 * 1024) });
    expect(big.status).toBe(413);
    expect(big.body.error).toBe('PAYLOAD_TOO_LARGE');
  });
});
