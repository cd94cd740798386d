import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from '../src/domain/access/authenticate.js';
import type { Principal } from '../src/domain/access/principal.js';
import { ConflictError } from '../src/domain/shared/errors.js';
import { defaultLabel, labelSlug } from '../src/domain/volumes/inputs.js';
import { deleteVolume } from '../src/domain/volumes/lifecycle.js';
import { volumeOwners } from '../src/domain/volumes/owners.js';
import { isVolumeAttached } from '../src/domain/volumes/status.js';
import { updateVolume } from '../src/domain/volumes/volumes.js';
import { ADMIN_KEY, createKey, jobsIdle, startGateway, type TestGateway } from './helpers/app.js';

// Field names in the reference's order, then our additions (quotas and usage; sharing and versions; soft delete;
// label, type, mount path and owner).
const VOLUME_FIELDS = (
  'volume_id workspace_id org_id environment_id name description embedding_model_id extraction_model_id indexing_mode chunking_strategy ' +
  'status tags reindex_status reindex_started_at reindex_completed_at reindex_progress reindex_error created_by created_at updated_at ' +
  'max_size_bytes max_file_count max_mounts used_bytes entry_count mount_count last_reconciled_at is_shared version modified_by ' +
  'chunk_size chunk_overlap search_embedding_model_id deleted_at restorable_until label volume_type mount_path owner'
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
      label: 'docs',
      volume_type: 'data',
      mount_path: '/data/docs',
      owner: { id: 'admin', name: 'platform admin' },
    });
    expect(new Date(v.created_at).toISOString()).toBe(v.created_at);
    expect(new Date(v.updated_at).toISOString()).toBe(v.updated_at);

    const got = await gw.call('GET', `${vols(ws)}/${v.volume_id}`);
    expect(got.status).toBe(200);
    expect(Object.keys(got.body)).toEqual(VOLUME_FIELDS);
    // The same object, but for the stamp of the reconcile the gateway runs at start, which may reach
    // the new volume between the two requests.
    const { last_reconciled_at: stamp, ...rest } = got.body;
    const { last_reconciled_at: created, ...same } = v;
    expect(rest).toEqual(same);
    if (stamp !== created) expect(new Date(stamp).toISOString()).toBe(stamp);
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

describe('volume label, type and mount path', () => {
  it('defaults: label = name, type data, mount path /data/<slug of the label>', async () => {
    const long = `${'L'.repeat(127)}\u{1F600}${'x'.repeat(20)}`;
    for (const [name, label, mount] of [
      ['Training Data 2024', 'Training Data 2024', '/data/training-data-2024'],
      ["Données d'été", "Données d'été", '/data/donnees-d-ete'],
      ['--Hello__World--', '--Hello__World--', '/data/hello-world'],
      ['数据集', '数据集', '/data/volume'],
      [long, 'L'.repeat(127), `/data/${'l'.repeat(100)}`],
    ]) {
      const v = await newVolume(ws, { name });
      expect(v, name).toMatchObject({ name, label, volume_type: 'data', mount_path: mount });
    }
    // A label given without a mount path names the default mount path.
    const labelled = await newVolume(ws, { name: 'lbl', label: '  My Models!  ' });
    expect(labelled).toMatchObject({ label: 'My Models!', mount_path: '/data/my-models' });
    expect(labelSlug(`${'x'.repeat(99)}-abc`)).toBe('x'.repeat(99));
    expect(defaultLabel('n'.repeat(255))).toHaveLength(128);
  });

  it('takes label, volume_type and mount_path on create and reads them back', async () => {
    const body = { name: 'weights', label: 'LLaMA weights', volume_type: 'model', mount_path: '/mnt/models/llama-3' };
    const v = await newVolume(ws, body);
    expect(v).toMatchObject(body);
    const got = await gw.call('GET', `${vols(ws)}/${v.volume_id}`);
    expect(got.body).toMatchObject(body);
    expect(await newVolume(ws, { name: 'home', volume_type: 'workspace', mount_path: '/home/user/project' })).toMatchObject({
      volume_type: 'workspace',
      mount_path: '/home/user/project',
    });
  });

  it('422 names label, volume_type and mount_path, and creates nothing', async () => {
    const target = await newWorkspace('acme', 'bad-display');
    const cases: [Record<string, unknown>, string, string][] = [
      [{ label: '' }, 'label', 'string_too_short'],
      [{ label: '   ' }, 'label', 'string_too_short'],
      [{ label: 'l'.repeat(129) }, 'label', 'string_too_long'],
      [{ label: 42 }, 'label', 'string_type'],
      [{ label: null }, 'label', 'string_type'],
      [{ label: 'two\nlines' }, 'label', 'string_pattern_mismatch'],
      [{ label: 'nul\u0000' }, 'label', 'string_nul'],
      [{ label: 'half \ud800 pair' }, 'label', 'string_unicode'],
      [{ volume_type: 'shared' }, 'volume_type', 'enum'],
      [{ volume_type: 'DATA' }, 'volume_type', 'enum'],
      [{ mount_path: 'data/x' }, 'mount_path', 'value_error'],
      [{ mount_path: '' }, 'mount_path', 'value_error'],
      [{ mount_path: '/' }, 'mount_path', 'value_error'],
      [{ mount_path: '/data/' }, 'mount_path', 'value_error'],
      [{ mount_path: '/data//x' }, 'mount_path', 'value_error'],
      [{ mount_path: '/data/../etc' }, 'mount_path', 'value_error'],
      [{ mount_path: '/data/./x' }, 'mount_path', 'value_error'],
      [{ mount_path: '/data/..' }, 'mount_path', 'value_error'],
      [{ mount_path: '/data/\tx' }, 'mount_path', 'value_error'],
      [{ mount_path: `/${'p'.repeat(255)}` }, 'mount_path', 'string_too_long'],
      [{ mount_path: 7 }, 'mount_path', 'string_type'],
      [{ mount_path: '/da\u0000ta' }, 'mount_path', 'string_nul'],
    ];
    for (const [extra, field, type] of cases) {
      const res = await gw.call('POST', vols(target), { name: 'ok', ...extra });
      expect(res.status, JSON.stringify(extra)).toBe(422);
      expect(res.body.detail[0], JSON.stringify(extra)).toMatchObject({ loc: ['body', field], type });
    }
    expect((await gw.call('POST', vols(target), { name: 'ok', mount_path: '/data/..' })).body.detail[0].msg).toContain('..');
    expect(await volumeRows(target)).toBe(0);
    // The dry run answers the same items.
    const dry = await gw.call('POST', `${vols(target)}/validate`, { name: 'ok', mount_path: 'relative' });
    expect(dry.body).toMatchObject({ valid: false, errors: [{ loc: ['body', 'mount_path'], type: 'value_error' }] });
    // Boundaries that are fine.
    const edge = await newVolume(target, { name: 'edge', label: 'l'.repeat(128), mount_path: `/${'p'.repeat(254)}` });
    expect(edge.label).toHaveLength(128);
    expect(edge.mount_path).toHaveLength(255);
  });

  it('PATCH changes label, volume_type and mount_path (renaming leaves them), and 422 names them', async () => {
    const v = await newVolume(ws, { name: 'changing' });
    const res = await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, { label: 'Changed', volume_type: 'model', mount_path: '/models/c' });
    expect(res.status).toBe(200);
    expect(res.body.volume).toMatchObject({ label: 'Changed', volume_type: 'model', mount_path: '/models/c', version: v.version + 1 });
    const renamed = await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, { name: 'changed-again' });
    expect(renamed.body.volume).toMatchObject({ name: 'changed-again', label: 'Changed', mount_path: '/models/c', volume_type: 'model' });
    // A new label does not move the mount path either.
    const relabelled = await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, { label: 'Other' });
    expect(relabelled.body.volume).toMatchObject({ label: 'Other', mount_path: '/models/c' });
    for (const [body, field, type] of [
      [{ label: '' }, 'label', 'string_too_short'],
      [{ label: null }, 'label', 'string_type'],
      [{ volume_type: 'shared' }, 'volume_type', 'enum'],
      [{ volume_type: null }, 'volume_type', 'enum'],
      [{ mount_path: '/x/' }, 'mount_path', 'value_error'],
      [{ mount_path: null }, 'mount_path', 'string_type'],
    ] as [unknown, string, string][]) {
      const bad = await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, body);
      expect(bad.status, JSON.stringify(body)).toBe(422);
      expect(bad.body.detail[0], JSON.stringify(body)).toMatchObject({ loc: ['body', field], type });
    }
    expect((await gw.call('GET', `${vols(ws)}/${v.volume_id}`)).body).toEqual(relabelled.body.volume);
  });
});

describe('volume owner', () => {
  it("is the creating key's name, or platform admin, in get, list, create and PATCH answers", async () => {
    const made = await gw.call('POST', '/v1/orgs/acme/api-keys', { name: 'owner-bot', scopes: ['volumes:write', 'volumes:read'] });
    const key = made.body.api_key;
    const keyId = made.body.key.key_id;
    const target = await newWorkspace('acme', 'owned');
    const byKey = await gw.call('POST', vols(target), { name: 'by-key' }, key);
    expect(byKey.body.volume.owner).toEqual({ id: `key:${keyId}`, name: 'owner-bot' });
    expect(byKey.body.volume.created_by).toBe(`key:${keyId}`);
    const byAdmin = await newVolume(target, { name: 'by-admin' });
    expect(byAdmin.owner).toEqual({ id: 'admin', name: 'platform admin' });
    // Someone else changing it does not change its owner.
    const patched = await gw.call('PATCH', `${vols(target)}/${byKey.body.volume.volume_id}`, { description: 'x' });
    expect(patched.body.volume).toMatchObject({ modified_by: 'admin', owner: { id: `key:${keyId}`, name: 'owner-bot' } });
    const got = await gw.call('GET', `${vols(target)}/${byKey.body.volume.volume_id}`, undefined, key);
    expect(got.body.owner).toEqual({ id: `key:${keyId}`, name: 'owner-bot' });

    // A list of volumes made by several keys looks their owners up in one statement.
    const other = await gw.call('POST', '/v1/orgs/acme/api-keys', { name: 'second-bot', scopes: ['volumes:write'] });
    await gw.call('POST', vols(target), { name: 'by-second' }, other.body.api_key);
    gw.queries.length = 0;
    const list = await gw.call('GET', `${vols(target)}?sort=name`);
    expect(list.body.volumes.map((v: any) => [v.name, v.owner.name])).toEqual([
      ['by-admin', 'platform admin'],
      ['by-key', 'owner-bot'],
      ['by-second', 'second-bot'],
    ]);
    expect(gw.queries.filter((q) => /"api_keys"/.test(q))).toHaveLength(1);
    // A mask without owner looks nothing up.
    gw.queries.length = 0;
    expect((await gw.call('GET', `${vols(target)}?fields=name`)).status).toBe(200);
    expect(gw.queries.filter((q) => /"api_keys"/.test(q))).toHaveLength(0);
    expect((await gw.call('GET', `${vols(target)}?fields=owner&limit=1&sort=name`)).body.volumes).toEqual([
      { owner: { id: 'admin', name: 'platform admin' } },
    ]);

    // A revoked key keeps its name as an owner.
    expect((await gw.call('DELETE', `/v1/orgs/acme/api-keys/${keyId}`)).status).toBe(200);
    expect((await gw.call('GET', `${vols(target)}/${byKey.body.volume.volume_id}`)).body.owner.name).toBe('owner-bot');
  });

  it('volumeOwners (domain): {id, name, email} in order, one query, null name for a key it cannot find', async () => {
    const rt = gw.app.runtime;
    const made = await gw.call('POST', '/v1/orgs/acme/api-keys', { name: 'domain-bot', scopes: ['volumes:read'] });
    const globexKey = await gw.call('POST', '/v1/orgs/globex/api-keys', { name: 'globex-bot', scopes: ['volumes:read'] });
    const owners = await volumeOwners(rt, [
      { orgId: 'acme', createdBy: 'admin' },
      { orgId: 'acme', createdBy: `key:${made.body.key.key_id}` },
      { orgId: 'acme', createdBy: `key:${MISSING}` },
      // A key of another organisation never names an owner here.
      { orgId: 'acme', createdBy: `key:${globexKey.body.key.key_id}` },
      { orgId: 'acme', createdBy: 'key:not-a-uuid' },
    ]);
    expect(owners).toEqual([
      { id: 'admin', name: 'platform admin', email: null },
      { id: `key:${made.body.key.key_id}`, name: 'domain-bot', email: null },
      { id: `key:${MISSING}`, name: null, email: null },
      { id: `key:${globexKey.body.key.key_id}`, name: null, email: null },
      { id: 'key:not-a-uuid', name: null, email: null },
    ]);
    expect(await volumeOwners(rt, [])).toEqual([]);
  });
});

describe('domain options for the peer dialects', () => {
  const admin: Principal = { kind: 'platform', subject: 'admin' };
  const routeOf = (wsId: string, volumeId: string) => ({ orgId: 'acme', workspaceId: wsId, volumeId });

  it('updateVolume forbidShrink refuses any lower max_size_bytes (409 naming it); /v1 PATCH may still lower it to usage', async () => {
    const rt = gw.app.runtime;
    const v = await newVolume(ws, { name: 'sized', max_size_bytes: 1000 });
    const route = routeOf(ws, v.volume_id);
    const shrink = updateVolume(rt, admin, route, { max_size_bytes: 999, description: 'not applied' }, ['body'], { forbidShrink: true });
    await expect(shrink).rejects.toBeInstanceOf(ConflictError);
    await expect(shrink).rejects.toMatchObject({
      code: 'CONFLICT',
      details: { field: 'max_size_bytes', value: 999, current: 1000, reason: 'size_decrease' },
    });
    expect((await gw.call('GET', `${vols(ws)}/${v.volume_id}`)).body).toMatchObject({
      max_size_bytes: 1000,
      description: null,
      version: 1,
    });
    // Growing, keeping and lifting the limit are fine; from unlimited, any limit is a decrease.
    expect((await updateVolume(rt, admin, route, { max_size_bytes: 1000 }, ['body'], { forbidShrink: true })).maxSizeBytes).toBe(1000n);
    expect((await updateVolume(rt, admin, route, { max_size_bytes: 5000 }, ['body'], { forbidShrink: true })).maxSizeBytes).toBe(5000n);
    expect((await updateVolume(rt, admin, route, { max_size_bytes: null }, ['body'], { forbidShrink: true })).maxSizeBytes).toBeNull();
    await expect(updateVolume(rt, admin, route, { max_size_bytes: 10 ** 12 }, ['body'], { forbidShrink: true })).rejects.toMatchObject({
      details: { field: 'max_size_bytes', current: null },
    });
    // Other changes pass through untouched by the option.
    expect((await updateVolume(rt, admin, route, { label: 'Sized' }, ['body'], { forbidShrink: true })).label).toBe('Sized');

    // /v1 keeps its rule: lowering is fine down to what the volume uses, 409 below it.
    expect((await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, { max_size_bytes: 100 })).body.volume.max_size_bytes).toBe(100);
    expect((await gw.call('PUT', `${vols(ws)}/${v.volume_id}/entries/a.txt`, { content_text: 'x'.repeat(50) })).status).toBe(201);
    const below = await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, { max_size_bytes: 49 });
    expect(below.status).toBe(409);
    expect(below.body.details).toMatchObject({ field: 'max_size_bytes', used: 50 });
    expect((await gw.call('PATCH', `${vols(ws)}/${v.volume_id}`, { max_size_bytes: 50 })).status).toBe(200);
  });

  it('deleteVolume refuseIfAttached refuses while the volume has mounts (409 naming mount_count); /v1 DELETE does not', async () => {
    const rt = gw.app.runtime;
    const v = await newVolume(ws, { name: 'attached' });
    const route = routeOf(ws, v.volume_id);
    const mount = await gw.call('POST', `${vols(ws)}/${v.volume_id}/mounts`, { app_id: 'runner' });
    expect(mount.status).toBe(201);
    const row = await rt.db.volume.findUniqueOrThrow({ where: { id: v.volume_id } });
    expect(isVolumeAttached(row)).toBe(true);
    for (const permanent of [false, true]) {
      const refused = deleteVolume(rt, admin, route, { refuseIfAttached: true, permanent });
      await expect(refused).rejects.toBeInstanceOf(ConflictError);
      await expect(refused).rejects.toMatchObject({ details: { mount_count: 1, volume_id: v.volume_id, reason: 'attached' } });
    }
    expect((await gw.call('GET', `${vols(ws)}/${v.volume_id}`)).body).toMatchObject({ version: 1, deleted_at: null, mount_count: 1 });

    expect((await gw.call('DELETE', `${vols(ws)}/${v.volume_id}/mounts/${mount.body.mount.mount_id}`)).status).toBe(200);
    expect(isVolumeAttached(await rt.db.volume.findUniqueOrThrow({ where: { id: v.volume_id } }))).toBe(false);
    await deleteVolume(rt, admin, route, { refuseIfAttached: true });
    expect((await gw.call('GET', `${vols(ws)}/${v.volume_id}`)).status).toBe(404);
    // A soft-deleted volume is attached to nothing: deleting it for good is allowed.
    await deleteVolume(rt, admin, route, { refuseIfAttached: true, permanent: true });
    expect(await rt.db.volume.count({ where: { id: v.volume_id } })).toBe(0);

    // The same refusal for an org key, and /v1 deletes an attached volume as before.
    const keyed = await newVolume(ws, { name: 'attached-2' });
    await gw.call('POST', `${vols(ws)}/${keyed.volume_id}/mounts`, { app_id: 'runner' });
    const writer = await authenticate(rt, await createKey(gw, 'acme', ['volumes:write']), ADMIN_KEY);
    await expect(deleteVolume(rt, writer, routeOf(ws, keyed.volume_id), { refuseIfAttached: true })).rejects.toMatchObject({
      code: 'CONFLICT',
    });
    expect((await gw.call('DELETE', `${vols(ws)}/${keyed.volume_id}`)).status).toBe(200);
  });
});
