import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';

const KEY_FIELDS = ['key_id', 'org_id', 'name', 'prefix', 'scopes', 'app_id', 'created_by', 'created_at', 'last_used_at', 'revoked_at'];
const ERROR_FIELDS = ['error', 'message', 'details', 'timestamp', 'status_code'];
const MISSING = '01900000-0000-7000-8000-000000000000';

let gw: TestGateway;
const keys = (org: string) => `/v1/orgs/${org}/api-keys`;
const keyRows = async (org: string) =>
  (await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM api_keys WHERE org_id = $1', org))[0]?.n;

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.stop();
});

describe('legacy error envelopes', () => {
  it('carry the timestamp format the reference documents: UTC, microseconds, no zone suffix', async () => {
    // reference/volumes-api.txt and workspaces-api.txt show every error envelope's timestamp as
    // "2025-01-01T00:00:00.000000"; legacy callers parse exactly that, so it stays (resources use ISO 8601 with Z).
    const before = Date.now();
    const res = await gw.call('GET', `/v1/orgs/acme/workspaces/${MISSING}`);
    expect(res.status).toBe(404);
    expect(Object.keys(res.body)).toEqual(ERROR_FIELDS);
    expect(res.body.timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/);
    const at = Date.parse(`${res.body.timestamp.slice(0, 23)}Z`);
    expect(at).toBeGreaterThanOrEqual(before - 1000);
    expect(at).toBeLessThanOrEqual(Date.now() + 1000);
  });
});

describe('API keys REST', () => {
  it('shows the secret once and stores only its sha256', async () => {
    const res = await gw.call('POST', keys('acme'), { name: 'ci', scopes: ['volumes:read', 'search', 'volumes:read'] });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body)).toEqual(['api_key', 'key']);
    const secret: string = res.body.api_key;
    expect(secret).toMatch(/^vgk_[A-Za-z0-9_-]{40,}$/);
    const key = res.body.key;
    expect(Object.keys(key)).toEqual(KEY_FIELDS);
    expect(key).toMatchObject({
      org_id: 'acme',
      name: 'ci',
      prefix: secret.slice(0, 12),
      scopes: ['volumes:read', 'search'],
      app_id: null,
      created_by: 'admin',
      last_used_at: null,
      revoked_at: null,
    });
    expect(new Date(key.created_at).toISOString()).toBe(key.created_at);

    const list = await gw.call('GET', keys('acme'));
    expect(list.status).toBe(200);
    expect(list.body.api_keys).toContainEqual(key);
    expect(JSON.stringify(list.body)).not.toContain(secret);
    expect(JSON.stringify(list.body)).not.toContain(secret.slice(12));

    const rows = await gw.app.database.prisma.$queryRawUnsafe<{ row: string; secret_hash: string }[]>(
      'SELECT row_to_json(k)::text AS row, secret_hash FROM api_keys k WHERE id = $1',
      key.key_id,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.secret_hash).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(rows[0]?.row).not.toContain(secret.slice(12));

    // A second key gets a different secret.
    const again = await gw.call('POST', keys('acme'), { name: 'ci', scopes: ['search'] });
    expect(again.body.api_key).not.toBe(secret);
  });

  it('a new key works for its scopes only, through either header, and records its last use', async () => {
    const made = await gw.call('POST', keys('acme'), { name: 'reader', scopes: ['workspaces:read'] });
    const secret = made.body.api_key;
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, secret)).status).toBe(200);
    const viaHeader = await fetch(`${gw.url}/v1/orgs/acme/workspaces`, { headers: { 'x-api-key': secret } });
    expect(viaHeader.status).toBe(200);
    const denied = await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'nope' }, secret);
    expect(denied.status).toBe(403);
    expect(denied.body.details.required_permission).toBe('workspaces:write');

    const listed = (await gw.call('GET', `${keys('acme')}?limit=200`)).body.api_keys.find(
      (k: { key_id: string }) => k.key_id === made.body.key.key_id,
    );
    expect(listed.last_used_at).not.toBeNull();
  });

  it('an org admin key manages its own org and the keys it creates name it', async () => {
    const admin = await gw.call('POST', keys('acme'), { name: 'org-admin', scopes: ['admin'] });
    const res = await gw.call('POST', keys('acme'), { name: 'child', scopes: ['workspaces:write'] }, admin.body.api_key);
    expect(res.status).toBe(201);
    expect(res.body.key.created_by).toBe(`key:${admin.body.key.key_id}`);
    expect((await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'by-child' }, res.body.api_key)).status).toBe(201);
    expect((await gw.call('GET', keys('acme'), undefined, admin.body.api_key)).status).toBe(200);
    expect((await gw.call('DELETE', `${keys('acme')}/${res.body.key.key_id}`, undefined, admin.body.api_key)).status).toBe(200);
  });

  it('revokes at once; revoking again succeeds and keeps the first revocation time', async () => {
    const made = await gw.call('POST', keys('acme'), { name: 'temp', scopes: ['workspaces:read'] });
    const secret = made.body.api_key;
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, secret)).status).toBe(200);

    const res = await gw.call('DELETE', `${keys('acme')}/${made.body.key.key_id}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ message: 'API key revoked successfully' });
    const after = await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, secret);
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ error: 'AUTHENTICATION_FAILED', status_code: 401 });

    const find = async () =>
      (await gw.call('GET', `${keys('acme')}?limit=200`)).body.api_keys.find((k: { key_id: string }) => k.key_id === made.body.key.key_id);
    const revokedAt = (await find()).revoked_at;
    expect(new Date(revokedAt).toISOString()).toBe(revokedAt);
    expect((await gw.call('DELETE', `${keys('acme')}/${made.body.key.key_id}`)).status).toBe(200);
    expect((await find()).revoked_at).toBe(revokedAt);
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, secret)).status).toBe(401);

    const unknown = await gw.call('DELETE', `${keys('acme')}/${MISSING}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.details).toEqual({ resource_type: 'api_key', resource_id: MISSING });
  });

  it('lists with limit and cursors, newest last', async () => {
    const names: string[] = [];
    for (let i = 0; i < 5; i++) {
      names.push(`k-${i}`);
      expect((await gw.call('POST', keys('pager'), { name: `k-${i}`, scopes: ['search'] })).status).toBe(201);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { status: number; body: any } = await gw.call('GET', `${keys('pager')}?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(Object.keys(page.body)).toEqual(['total', 'has_more', 'next_cursor', 'api_keys']);
      expect(page.body.total).toBe(5);
      for (const k of page.body.api_keys) expect(Object.keys(k)).toEqual(KEY_FIELDS);
      seen.push(...page.body.api_keys.map((k: { name: string }) => k.name));
      cursor = page.body.next_cursor;
      expect(page.body.has_more).toBe(cursor !== null);
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(names);
    for (const q of ['limit=0', 'limit=201', 'cursor=nope']) expect((await gw.call('GET', `${keys('pager')}?${q}`)).status, q).toBe(422);
  });
});

describe('API keys REST errors', () => {
  it('401 without credentials; 403 naming admin for any non-admin key', async () => {
    const victim = (await gw.call('POST', keys('acme'), { name: 'victim', scopes: ['search'] })).body.key.key_id;
    const everythingButAdmin = await createKey(gw, 'acme', [
      'workspaces:read',
      'workspaces:write',
      'volumes:read',
      'volumes:write',
      'entries:read',
      'entries:write',
      'locks:write',
      'search',
    ]);
    const appKey = await createKey(gw, 'acme', ['volumes:read'], 'bot');
    const before = await keyRows('acme');
    const routes: [string, string, unknown?][] = [
      ['POST', keys('acme'), { name: 'escalate', scopes: ['admin'] }],
      ['GET', keys('acme')],
      ['DELETE', `${keys('acme')}/${victim}`],
    ];
    for (const [method, route, body] of routes) {
      expect((await gw.call(method, route, body, null)).status).toBe(401);
      for (const key of [everythingButAdmin, appKey]) {
        const res = await gw.call(method, route, body, key);
        expect(res.status, `${method} ${route}`).toBe(403);
        expect(Object.keys(res.body)).toEqual(ERROR_FIELDS);
        expect(res.body).toMatchObject({ error: 'FORBIDDEN', details: { required_permission: 'admin' } });
      }
    }
    expect(await keyRows('acme')).toBe(before);
    const list = (await gw.call('GET', `${keys('acme')}?limit=200`)).body.api_keys;
    expect(list.find((k: { key_id: string }) => k.key_id === victim).revoked_at).toBeNull();
  });

  it('app keys may not hold admin or workspaces:write; they get app_id otherwise', async () => {
    const before = await keyRows('apps');
    for (const scopes of [['admin'], ['workspaces:write'], ['volumes:read', 'admin', 'workspaces:write']]) {
      const res = await gw.call('POST', keys('apps'), { name: 'app', scopes, app_id: 'bot' });
      expect(res.status, scopes.join()).toBe(422);
      expect(res.body.detail[0]).toMatchObject({ loc: ['body', 'scopes'], type: 'value_error' });
      for (const bad of scopes.filter((s) => s === 'admin' || s === 'workspaces:write')) expect(res.body.detail[0].msg).toContain(bad);
    }
    expect(await keyRows('apps')).toBe(before);
    const ok = await gw.call('POST', keys('apps'), { name: 'app', scopes: ['volumes:read', 'entries:write', 'search'], app_id: 'bot' });
    expect(ok.status).toBe(201);
    expect(ok.body.key).toMatchObject({ app_id: 'bot', scopes: ['volumes:read', 'entries:write', 'search'] });
  });

  it('422 names the field for bad bodies and writes nothing', async () => {
    const before = await keyRows('acme');
    const cases: [unknown, (string | number)[], string][] = [
      [{ scopes: ['search'] }, ['body', 'name'], 'missing'],
      [{ name: '', scopes: ['search'] }, ['body', 'name'], 'string_too_short'],
      [{ name: 'n\u0000', scopes: ['search'] }, ['body', 'name'], 'string_nul'],
      [{ name: 'k' }, ['body', 'scopes'], 'missing'],
      [{ name: 'k', scopes: 'admin' }, ['body', 'scopes'], 'list_type'],
      [{ name: 'k', scopes: [] }, ['body', 'scopes'], 'too_short'],
      [{ name: 'k', scopes: ['superuser'] }, ['body', 'scopes', 0], 'enum'],
      [{ name: 'k', scopes: ['search', 'volumes:delete'] }, ['body', 'scopes', 1], 'enum'],
      [{ name: 'k', scopes: ['search'], app_id: 'has space' }, ['body', 'app_id'], 'string_pattern_mismatch'],
      [{ name: 'k', scopes: ['search'], app_id: 3 }, ['body', 'app_id'], 'string_type'],
    ];
    for (const [body, loc, type] of cases) {
      const res = await gw.call('POST', keys('acme'), body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body.detail[0], JSON.stringify(body)).toMatchObject({ loc, type });
    }
    expect(await keyRows('acme')).toBe(before);
    const nulId = await gw.call('DELETE', `${keys('acme')}/%00`);
    expect(nulId.status).toBe(422);
    expect(nulId.body.detail[0].loc).toEqual(['path', 'key_id']);
  });

  it("another org's keys are 404 on every route and keep working", async () => {
    const globex = await gw.call('POST', keys('globex'), { name: 'g', scopes: ['workspaces:read'] });
    const acmeAdmin = await createKey(gw, 'acme', ['admin']);
    for (const [method, route, body] of [
      ['GET', keys('globex')],
      ['POST', keys('globex'), { name: 'planted', scopes: ['admin'] }],
      ['DELETE', `${keys('globex')}/${globex.body.key.key_id}`],
      ['DELETE', `${keys('acme')}/${globex.body.key.key_id}`],
    ] as [string, string, unknown?][]) {
      const res = await gw.call(method, route, body, acmeAdmin);
      expect(res.status, `${method} ${route}`).toBe(404);
      expect(res.body.error).toBe('RESOURCE_NOT_FOUND');
    }
    expect(await keyRows('globex')).toBe(1);
    expect((await gw.call('GET', '/v1/orgs/globex/workspaces', undefined, globex.body.api_key)).status).toBe(200);
    // and a globex key cannot reach acme either
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, globex.body.api_key)).status).toBe(404);
  });
});
