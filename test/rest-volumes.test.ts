import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createKey, jobsIdle, startGateway, type TestGateway } from './helpers/app.js';

// Field names in the reference's order, then our additions (quotas and usage; sharing and versions; soft delete).
const VOLUME_FIELDS = (
  'volume_id workspace_id org_id environment_id name description embedding_model_id extraction_model_id indexing_mode chunking_strategy ' +
  'status tags reindex_status reindex_started_at reindex_completed_at reindex_progress reindex_error created_by created_at updated_at ' +
  'max_size_bytes max_file_count max_mounts used_bytes entry_count mount_count last_reconciled_at is_shared version modified_by ' +
  'chunk_size chunk_overlap search_embedding_model_id deleted_at restorable_until'
).split(' ');
const ERROR_FIELDS = ['error', 'message', 'details', 'timestamp', 'status_code'];
const MISSING = '01900000-0000-7000-8000-000000000000';

let gw: TestGateway;
let ws: string;
const vols = (wsId: string, org = 'acme') => `/v1/orgs/${org}/workspaces/${wsId}/volumes`;

async function newWorkspace(org: string, name: string): Promise<string> {
  const res = await gw.call('POST', `/v1/orgs/${org}/workspaces`, { name });
  expect(res.status).toBe(201);
  return res.body.workspace_id;
}
async function newVolume(wsId: string, body: Record<string, unknown>, org = 'acme') {
  const res = await gw.call('POST', vols(wsId, org), body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.volume;
}
async function volumeRows(wsId: string) {
  const rows = await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
    'SELECT count(*)::int AS n FROM volumes WHERE workspace_id = $1',
    wsId,
  );
  return rows[0]?.n;
}

beforeAll(async () => {
  gw = await startGateway();
  ws = await newWorkspace('acme', 'main');
});
afterAll(async () => {
  await gw?.stop();
});

describe('volumes REST', () => {
  it('creates with the documented defaults and reads back the same object', async () => {
    const res = await gw.call('POST', vols(ws), { name: 'docs' });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body)).toEqual(['message', 'volume']);
    expect(res.body.message).toBe('Volume created successfully');
    const v = res.body.volume;
    expect(Object.keys(v)).toEqual(VOLUME_FIELDS);
    expect(v).toMatchObject({
      workspace_id: ws,
      org_id: 'acme',
      environment_id: null,
      name: 'docs',
      description: null,
      embedding_model_id: 'hash-1024',
      extraction_model_id: null,
      indexing_mode: 'auto',
      chunking_strategy: 'recursive',
      status: 'active',
      tags: [],
      reindex_status: null,
      reindex_started_at: null,
      reindex_completed_at: null,
      reindex_progress: {},
      reindex_error: null,
      created_by: 'admin',
      is_shared: false,
      version: 1,
      modified_by: 'admin',
    });
    expect(new Date(v.created_at).toISOString()).toBe(v.created_at);
    expect(new Date(v.updated_at).toISOString()).toBe(v.updated_at);

    const got = await gw.call('GET', `${vols(ws)}/${v.volume_id}`);
    expect(got.status).toBe(200);
    expect(Object.keys(got.body)).toEqual(VOLUME_FIELDS);
    expect(got.body).toEqual(v);
  });

  it('takes every field on create and records the creating key', async () => {
    const made = await gw.call('POST', '/v1/orgs/acme/api-keys', { name: 'writer', scopes: ['volumes:write', 'volumes:read'] });
    const body = {
      name: '  full  ',
      environment_id: 'prod',
      description: 'everything set',
      embedding_model_id: 'hash-1536',
      extraction_model_id: 'ocr:v2',
      indexing_mode: 'manual',
      chunking_strategy: 'fixed',
      tags: ['a', 'b', 'a'],
    };
    const res = await gw.call('POST', vols(ws), body, made.body.api_key);
    expect(res.status).toBe(201);
    expect(res.body.volume).toMatchObject({ ...body, name: 'full', tags: ['a', 'b'], created_by: `key:${made.body.key.key_id}` });
  });

  it('patches only the given fields, clears with null and moves updated_at', async () => {
    const v = await newVolume(ws, { name: 'patchme', description: 'keep', tags: ['t'] });
    const change = { name: 'patched', indexing_mode: 'manual', chunking_strategy: 'none' };
    const res = await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, change);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body)).toEqual(['message', 'volume']);
    expect(res.body.message).toBe('Volume updated successfully');
    expect(Object.keys(res.body.volume)).toEqual(VOLUME_FIELDS);
    // A new chunking strategy re-chunks what the volume holds: a reindex is queued.
    const { reindex_status, reindex_started_at, reindex_progress, ...rest } = res.body.volume;
    const { reindex_status: _s, reindex_started_at: _t, reindex_progress: _p, ...before } = v;
    expect(rest).toEqual({ ...before, ...change, version: v.version + 1, updated_at: res.body.volume.updated_at });
    expect(reindex_status).toMatch(/queued|running|completed/);
    expect(reindex_started_at).not.toBeNull();
    expect(reindex_progress).toMatchObject({ total: 0, processed: 0, failed: 0 });
    expect(Date.parse(res.body.volume.updated_at)).toBeGreaterThanOrEqual(Date.parse(v.updated_at));
    // The queued reindex records its end on the volume row (moving updated_at): let it finish first.
    await jobsIdle(gw);

    const cleared = await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, { description: null, tags: [] });
    expect(cleared.body.volume).toMatchObject({ name: 'patched', description: null, tags: [] });
    const got = (await gw.call('GET', `${vols(ws)}/${v.volume_id}`)).body;
    expect({ ...got, reindex_status: null, reindex_completed_at: null, reindex_progress: null }).toEqual({
      ...cleared.body.volume,
      reindex_status: null,
      reindex_completed_at: null,
      reindex_progress: null,
    });
    // Renaming to its own name is not a conflict.
    expect((await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, { name: 'patched' })).status).toBe(200);
  });

  it('deletes a volume (soft: hidden, rows kept for a restore; permanent: rows gone); a second delete is 404', async () => {
    const count = async (id: string) =>
      (
        await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
          'SELECT (SELECT count(*) FROM volumes WHERE id = $1)::int + (SELECT count(*) FROM mounts WHERE volume_id = $1)::int AS n',
          id,
        )
      )[0]?.n;
    const v = await newVolume(ws, { name: 'doomed' });
    expect((await gw.call('POST', `${vols(ws)}/${v.volume_id}/mounts`, { app_id: 'bot' })).status).toBe(201);
    const res = await gw.call('DELETE', `${vols(ws)}/${v.volume_id}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ message: 'Volume deleted successfully' });
    expect((await gw.call('GET', `${vols(ws)}/${v.volume_id}`)).status).toBe(404);
    // Soft delete keeps the volume and its mount until the purge (or a permanent delete).
    expect(await count(v.volume_id)).toBe(2);
    expect((await gw.call('DELETE', `${vols(ws)}/${v.volume_id}`)).status).toBe(404);

    const gone = await newVolume(ws, { name: 'doomed-now' });
    expect((await gw.call('POST', `${vols(ws)}/${gone.volume_id}/mounts`, { app_id: 'bot' })).status).toBe(201);
    const now = await gw.call('DELETE', `${vols(ws)}/${gone.volume_id}?permanent=true`);
    expect(now.status).toBe(200);
    expect(now.body).toEqual({ message: 'Volume deleted successfully' });
    expect(await count(gone.volume_id)).toBe(0);
    expect((await gw.call('DELETE', `${vols(ws)}/${gone.volume_id}?permanent=true`)).status).toBe(404);
  });

  it('lists with limit and opaque cursors; validates limit and cursor', async () => {
    const pager = await newWorkspace('acme', 'pager');
    for (let i = 0; i < 5; i++) await newVolume(pager, { name: `v-${i}` });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { status: number; body: any } = await gw.call('GET', `${vols(pager)}?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(Object.keys(page.body)).toEqual(['total', 'has_more', 'next_cursor', 'volumes']);
      expect(page.body.total).toBe(5);
      for (const v of page.body.volumes) expect(Object.keys(v)).toEqual(VOLUME_FIELDS);
      seen.push(...page.body.volumes.map((v: { name: string }) => v.name));
      cursor = page.body.next_cursor;
      expect(page.body.has_more).toBe(cursor !== null);
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(['v-0', 'v-1', 'v-2', 'v-3', 'v-4']);
    expect((await gw.call('GET', vols(pager))).body).toMatchObject({ total: 5, has_more: false, next_cursor: null });
    expect((await gw.call('GET', `${vols(pager)}?limit=200`)).body.volumes).toHaveLength(5);
    expect((await gw.call('GET', `${vols(pager)}?limit=1`)).body.volumes).toHaveLength(1);

    for (const q of ['limit=0', 'limit=201', 'limit=abc', 'limit=-1']) {
      const res = await gw.call('GET', `${vols(pager)}?${q}`);
      expect(res.status, q).toBe(422);
      expect(res.body.detail[0].loc).toEqual(['query', 'limit']);
    }
    const bad = await gw.call('GET', `${vols(pager)}?cursor=garbage`);
    expect(bad.status).toBe(422);
    expect(bad.body.detail[0]).toMatchObject({ loc: ['query', 'cursor'], type: 'cursor_invalid' });
  });

  it('names are unique per workspace (409 on create and rename), free across workspaces', async () => {
    const first = await newVolume(ws, { name: 'unique' });
    for (const name of ['unique', '  unique ']) {
      const dup = await gw.call('POST', vols(ws), { name });
      expect(dup.status).toBe(409);
      expect(Object.keys(dup.body)).toEqual(ERROR_FIELDS);
      expect(dup.body).toMatchObject({ error: 'CONFLICT', status_code: 409 });
      expect(dup.body.message).toContain('unique');
    }
    const other = await newVolume(ws, { name: 'other' });
    const rename = await gw.call('PATCH', `${vols(ws)}/${other.volume_id}`, { name: 'unique', description: 'lost' });
    expect(rename.status).toBe(409);
    expect(rename.body.error).toBe('CONFLICT');
    expect((await gw.call('GET', `${vols(ws)}/${other.volume_id}`)).body).toEqual(other);

    // Racing creators: exactly one wins, the others get the same 409 (never a 500).
    const raced = await Promise.all([1, 2, 3, 4].map(() => gw.call('POST', vols(ws), { name: 'raced' })));
    expect(raced.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);

    const ws2 = await newWorkspace('acme', 'second');
    const twin = await newVolume(ws2, { name: 'unique' });
    expect(twin.volume_id).not.toBe(first.volume_id);
    expect(twin.workspace_id).toBe(ws2);
  });
});

describe('volumes REST errors', () => {
  it('404 for unknown workspaces and volumes, and for a volume addressed through the wrong workspace', async () => {
    const v = await newVolume(ws, { name: 'addressed' });
    const elsewhere = await newWorkspace('acme', 'elsewhere');
    for (const [method, route, body] of [
      ['GET', vols(MISSING)],
      ['POST', vols(MISSING), { name: 'x' }],
      ['GET', `${vols(MISSING)}/${v.volume_id}`],
      ['GET', `${vols(ws)}/${MISSING}`],
      ['PATCH', `${vols(ws)}/${MISSING}`, { name: 'x' }],
      ['DELETE', `${vols(ws)}/${MISSING}`],
      ['GET', `${vols(elsewhere)}/${v.volume_id}`],
      ['PATCH', `${vols(elsewhere)}/${v.volume_id}`, { name: 'moved' }],
      ['DELETE', `${vols(elsewhere)}/${v.volume_id}`],
    ] as [string, string, unknown?][]) {
      const res = await gw.call(method, route, body);
      expect(res.status, `${method} ${route}`).toBe(404);
      expect(Object.keys(res.body)).toEqual(ERROR_FIELDS);
      expect(res.body.error).toBe('RESOURCE_NOT_FOUND');
      expect(['workspace', 'volume']).toContain(res.body.details.resource_type);
    }
    expect((await gw.call('GET', `${vols(ws)}/${MISSING}`)).body.details).toEqual({ resource_type: 'volume', resource_id: MISSING });
    expect((await gw.call('GET', vols(MISSING))).body.details).toEqual({ resource_type: 'workspace', resource_id: MISSING });
    expect((await gw.call('GET', `${vols(ws)}/${v.volume_id}`)).body).toEqual(v);
    expect(await volumeRows(elsewhere)).toBe(0);
  });

  it('422 names the field for bad bodies and writes nothing', async () => {
    const target = await newWorkspace('acme', 'badinput');
    const cases: [unknown, (string | number)[], string][] = [
      [{}, ['body', 'name'], 'missing'],
      [{ name: 42 }, ['body', 'name'], 'string_type'],
      [{ name: '' }, ['body', 'name'], 'string_too_short'],
      [{ name: '   ' }, ['body', 'name'], 'string_too_short'],
      [{ name: 'x'.repeat(256) }, ['body', 'name'], 'string_too_long'],
      [{ name: 'ok', tags: 'nope' }, ['body', 'tags'], 'list_type'],
      [{ name: 'ok', tags: ['y'.repeat(65)] }, ['body', 'tags', 0], 'string_too_long'],
      [{ name: 'ok', tags: Array.from({ length: 51 }, (_, i) => `t${i}`) }, ['body', 'tags'], 'too_long'],
      [{ name: 'ok', indexing_mode: 'sometimes' }, ['body', 'indexing_mode'], 'enum'],
      [{ name: 'ok', chunking_strategy: 'semantic' }, ['body', 'chunking_strategy'], 'enum'],
      [{ name: 'ok', embedding_model_id: 5 }, ['body', 'embedding_model_id'], 'string_type'],
      [{ name: 'ok', embedding_model_id: 'has space' }, ['body', 'embedding_model_id'], 'string_pattern_mismatch'],
      [{ name: 'ok', description: 'd'.repeat(2001) }, ['body', 'description'], 'string_too_long'],
      [{ name: 'ok', environment_id: 7 }, ['body', 'environment_id'], 'string_type'],
      [{ name: 'nul\u0000name' }, ['body', 'name'], 'string_nul'],
      [{ name: 'ok', description: 'nul\u0000' }, ['body', 'description'], 'string_nul'],
      [{ name: 'ok', environment_id: '\u0000' }, ['body', 'environment_id'], 'string_nul'],
      [{ name: 'ok', tags: ['fine', 'n\u0000ul'] }, ['body', 'tags', 1], 'string_nul'],
      [[1], ['body'], 'dict_type'],
    ];
    for (const [body, loc, type] of cases) {
      const res = await gw.call('POST', vols(target), body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      const item = res.body.detail[0];
      expect(Object.keys(item)).toEqual(['loc', 'msg', 'type', 'input', 'ctx']);
      expect(item, JSON.stringify(body)).toMatchObject({ loc, type });
    }
    expect(await volumeRows(target)).toBe(0);

    const v = await newVolume(target, { name: 'stable', tags: ['keep'] });
    for (const [body, loc, type] of [
      [{ name: null }, ['body', 'name'], 'string_type'],
      [{ name: '' }, ['body', 'name'], 'string_too_short'],
      [{ indexing_mode: 'never' }, ['body', 'indexing_mode'], 'enum'],
      [{ tags: [1], name: 'renamed' }, ['body', 'tags', 0], 'string_type'],
      [{ name: 'n'.repeat(256) }, ['body', 'name'], 'string_too_long'],
      [{ description: '\u0000' }, ['body', 'description'], 'string_nul'],
    ] as [unknown, (string | number)[], string][]) {
      const res = await gw.call('PATCH', `${vols(target)}/${v.volume_id}`, body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body.detail[0]).toMatchObject({ loc, type });
    }
    const malformed = await gw.call('PATCH', `${vols(target)}/${v.volume_id}`, '{"name": ');
    expect(malformed.status).toBe(422);
    expect(malformed.body.detail[0]).toMatchObject({ loc: ['body'], type: 'json_invalid' });
    expect((await gw.call('GET', `${vols(target)}/${v.volume_id}`)).body).toEqual(v);

    // Ids in the path are validated too: NUL cannot reach Postgres.
    expect((await gw.call('DELETE', `${vols(target)}/a%00b`)).body.detail[0]).toMatchObject({ loc: ['path', 'volume_id'] });
    expect((await gw.call('GET', vols('%00'))).body.detail[0]).toMatchObject({ loc: ['path', 'workspace_id'] });
  });

  it('401 without a valid key; 403 names volumes:read or volumes:write and changes nothing', async () => {
    const v = await newVolume(ws, { name: 'guarded' });
    const routes: [string, string, unknown?][] = [
      ['GET', vols(ws)],
      ['POST', vols(ws), { name: 'sneaky' }],
      ['GET', `${vols(ws)}/${v.volume_id}`],
      ['PATCH', `${vols(ws)}/${v.volume_id}`, { name: 'sneaky' }],
      ['DELETE', `${vols(ws)}/${v.volume_id}`],
    ];
    for (const [method, route, body] of routes) {
      for (const key of [null, 'vgk_not-a-real-key', `${ADMIN_KEY}x`]) {
        const res = await gw.call(method, route, body, key);
        expect(res.status, `${method} ${route}`).toBe(401);
        expect(res.body).toMatchObject({ error: 'AUTHENTICATION_FAILED', details: {}, status_code: 401 });
      }
    }
    const noVolumes = await createKey(gw, 'acme', ['workspaces:read', 'workspaces:write', 'entries:write']);
    const readOnly = await createKey(gw, 'acme', ['volumes:read']);
    for (const [method, route, body] of routes) {
      const needs = method === 'GET' ? 'volumes:read' : 'volumes:write';
      for (const key of method === 'GET' ? [noVolumes] : [noVolumes, readOnly]) {
        const res = await gw.call(method, route, body, key);
        expect(res.status, `${method} ${route}`).toBe(403);
        expect(Object.keys(res.body)).toEqual(ERROR_FIELDS);
        expect(res.body).toMatchObject({ error: 'FORBIDDEN', status_code: 403, details: { required_permission: needs } });
      }
    }
    expect((await gw.call('GET', `${vols(ws)}/${v.volume_id}`, undefined, readOnly)).body).toEqual(v);
    const names = (await gw.call('GET', vols(ws), undefined, readOnly)).body.volumes.map((x: { name: string }) => x.name);
    expect(names).toContain('guarded');
    expect(names).not.toContain('sneaky');
  });

  it("another org's key gets 404 on every route, whichever org the path names", async () => {
    const globexWs = await newWorkspace('globex', 'secret-ws');
    const secret = await newVolume(globexWs, { name: 'secret' }, 'globex');
    const acmeAdmin = await createKey(gw, 'acme', ['admin']);
    for (const org of ['globex', 'acme']) {
      for (const [method, route, body] of [
        ['GET', vols(globexWs, org)],
        ['POST', vols(globexWs, org), { name: 'planted' }],
        ['GET', `${vols(globexWs, org)}/${secret.volume_id}`],
        ['PATCH', `${vols(globexWs, org)}/${secret.volume_id}`, { name: 'pwned' }],
        ['DELETE', `${vols(globexWs, org)}/${secret.volume_id}`],
        ['GET', `${vols(ws, org)}/${secret.volume_id}`],
      ] as [string, string, unknown?][]) {
        const res = await gw.call(method, route, body, acmeAdmin);
        expect(res.status, `${method} ${route}`).toBe(404);
        expect(res.body.error).toBe('RESOURCE_NOT_FOUND');
      }
    }
    expect((await gw.call('GET', `${vols(globexWs, 'globex')}/${secret.volume_id}`)).body).toEqual(secret);
    expect(await volumeRows(globexWs)).toBe(1);
  });
});
