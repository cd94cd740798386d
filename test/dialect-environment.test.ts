import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createKey, startGateway, type TestGateway } from './helpers/app.js';
import { call } from './helpers/http.js';

// The environment volumes dialect (/{envId}/volume…, /work/shared/reference/peer-environment-volumes.txt)
// over real HTTP: every route, the Volume object's fields and units, the same volume through /v1 and
// GraphQL, the environment's workspace, isolation, bad input, and that it captures no other route.

const ORG = 'envco';
const OTHER_ORG = 'elsewhere';
const MB = 1024 * 1024;
const VOLUME_FIELDS = ['id', 'name', 'envIdRef', 'companyIdRef', 'size', 'mountPath', 'isDeleted', 'createdBy', 'modifiedBy', 'version'];
const ERROR_FIELDS = ['statusCode', 'error', 'code', 'message'];

let gw: TestGateway;
/** Org keys of ORG: everything, volumes only, read only, no volume scope; another org's admin key. */
let admin: string;
let volumesOnly: string;
let reader: string;
let noVolumes: string;
let stranger: string;

const envPath = (env: string, rest = '') => `/${env}/volume${rest}`;
/** A call to the dialect with `key` (default: ORG's admin key). */
const env = (method: string, route: string, body?: unknown, key: string | null = admin, headers: Record<string, string> = {}) =>
  call(gw.url, method, route, body, { key, headers });
const uuidOf = (id: string) => id.replace(/^vol-/, '');

async function create(envId: string, body: Record<string, unknown>, key = admin) {
  const res = await env('POST', envPath(envId), body, key);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}
/** The volume as /v1 shows it (found through the org's volumes; platform key). */
async function v1Volume(id: string) {
  const row = await gw.app.database.prisma.volume.findUnique({ where: { id: uuidOf(id) }, select: { workspaceId: true, orgId: true } });
  if (!row) return null;
  const res = await gw.call('GET', `/v1/orgs/${row.orgId}/workspaces/${row.workspaceId}/volumes/${uuidOf(id)}`);
  return res.status === 200 ? res.body : null;
}
async function workspacesNamed(name: string, org = ORG) {
  const res = await gw.call('GET', `/v1/orgs/${org}/workspaces?search=${encodeURIComponent(name)}&limit=200`);
  expect(res.status).toBe(200);
  return (res.body.workspaces as { workspace_id: string; name: string }[]).filter((w) => w.name === name);
}
const volumeCount = () => gw.app.database.prisma.volume.count();
const workspaceCount = () => gw.app.database.prisma.workspace.count();

beforeAll(async () => {
  gw = await startGateway();
  admin = await createKey(gw, ORG, ['admin']);
  volumesOnly = await createKey(gw, ORG, ['volumes:read', 'volumes:write']);
  reader = await createKey(gw, ORG, ['volumes:read']);
  noVolumes = await createKey(gw, ORG, ['entries:read']);
  stranger = await createKey(gw, OTHER_ORG, ['admin']);
});
afterAll(async () => {
  await gw?.stop();
});

describe('environment dialect: routing', () => {
  it('serves only /{uuid}/volume…: /v1, /healthz and other first segments keep their own answers', async () => {
    expect((await call(gw.url, 'GET', '/healthz', undefined, { key: null })).status).toBe(200);
    const doc = await call(gw.url, 'GET', '/v1/openapi.json', undefined, { key: null });
    expect(doc.status).toBe(200);
    for (const route of ['/v1/volume', '/v1/volume/validate', '/api/volume', '/not-an-env/volume', `/${randomUUID()}x/volume`]) {
      for (const method of ['GET', 'POST']) {
        const res = await call(gw.url, method, route, method === 'POST' ? { name: 'x' } : undefined, { key: admin });
        // The gateway's own 404 (the /v1 envelope), never this dialect's answer.
        expect(res.status, `${method} ${route}`).toBe(404);
        expect(res.body.error, `${method} ${route}`).toBe('RESOURCE_NOT_FOUND');
        expect(res.body.details.resource_type).toBe('route');
      }
    }
    // A UUID first segment with another second segment is not this API either.
    const other = await call(gw.url, 'GET', `/${randomUUID()}/volumes`, undefined, { key: admin });
    expect(other.status).toBe(404);
    expect(other.body.error).toBe('RESOURCE_NOT_FOUND');
    // And /{uuid}/volume is (an empty environment lists []).
    const mine = await env('GET', envPath(randomUUID()));
    expect(mine.status).toBe(200);
    expect(mine.body).toEqual([]);
  });

  it('documents its six operations under its tag in /v1/openapi.json', async () => {
    const doc = (await call(gw.url, 'GET', '/v1/openapi.json', undefined, { key: null })).body;
    const ops = Object.entries(doc.paths as Record<string, Record<string, { operationId: string; tags: string[] }>>)
      .flatMap(([p, item]) => Object.entries(item).map(([m, op]) => ({ route: `${m.toUpperCase()} ${p}`, op })))
      .filter(({ op }) => op.tags?.includes('environment-volumes'));
    expect(Object.fromEntries(ops.map(({ route, op }) => [op.operationId, route]))).toEqual({
      createEnvironmentVolume: 'POST /{envId}/volume',
      listEnvironmentVolumes: 'GET /{envId}/volume',
      getEnvironmentVolume: 'GET /{envId}/volume/{id}',
      updateEnvironmentVolume: 'PUT /{envId}/volume/{id}',
      deleteEnvironmentVolume: 'DELETE /{envId}/volume/{id}',
      validateEnvironmentVolume: 'POST /{envId}/volume/validate',
    });
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['EnvironmentVolume', 'EnvironmentVolumeError']));
  });
});

describe('environment dialect: create and read', () => {
  it('creates the Volume object of the reference, and /v1 and GraphQL show the same volume', async () => {
    const envId = randomUUID();
    const v = await create(envId, { name: 'app-data-volume', size: 10240, mountPath: '/app/data' });
    expect(Object.keys(v)).toEqual(VOLUME_FIELDS);
    expect(v).toMatchObject({
      name: 'app-data-volume',
      envIdRef: envId,
      companyIdRef: ORG,
      size: 10240,
      mountPath: '/app/data',
      isDeleted: false,
      version: 1,
    });
    expect(v.id).toMatch(/^vol-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(v.createdBy).toMatch(/^key:[0-9a-f-]{36}$/);
    expect(v.modifiedBy).toBe(v.createdBy);

    // GET by either id form answers the same object.
    for (const id of [v.id, uuidOf(v.id)]) {
      const got = await env('GET', envPath(envId, `/${id}`));
      expect(got.status).toBe(200);
      expect(got.body).toEqual(v);
    }

    // /v1: same volume, environment_id, bytes, mount path, in the environment's workspace.
    const [ws] = await workspacesNamed(`env-${envId}`);
    expect(ws).toBeDefined();
    const rest = await v1Volume(v.id);
    expect(rest).toMatchObject({
      volume_id: uuidOf(v.id),
      workspace_id: ws?.workspace_id,
      org_id: ORG,
      environment_id: envId,
      name: 'app-data-volume',
      label: 'app-data-volume',
      max_size_bytes: 10240 * MB,
      mount_path: '/app/data',
      created_by: v.createdBy,
      modified_by: v.modifiedBy,
      version: 1,
      deleted_at: null,
    });

    // GraphQL: the same.
    const gql = await gw.gql(
      `query($id: ID!) { volume(id: $id) { id orgId environmentId name maxSizeBytes mountPath createdBy modifiedBy version } }`,
      { id: uuidOf(v.id) },
      admin,
    );
    expect(gql.body.errors).toBeUndefined();
    expect(gql.body.data.volume).toEqual({
      id: uuidOf(v.id),
      orgId: ORG,
      environmentId: envId,
      name: 'app-data-volume',
      maxSizeBytes: 10240 * MB,
      mountPath: '/app/data',
      createdBy: v.createdBy,
      modifiedBy: v.createdBy,
      version: 1,
    });
  });

  it('defaults: no size is unlimited (size null), the mount path is /data/<slug of the name>', async () => {
    const envId = randomUUID();
    const v = await create(envId, { name: 'Postgres Data' });
    expect(v).toMatchObject({ size: null, mountPath: '/data/postgres-data', version: 1 });
    expect(await v1Volume(v.id)).toMatchObject({ max_size_bytes: null, mount_path: '/data/postgres-data' });
  });

  it('reads a volume made in /v1 with an environment_id, sizes in MB rounded down', async () => {
    const envId = randomUUID();
    const ws = (await gw.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'made-in-v1' })).body.workspace_id;
    const res = await gw.call('POST', `/v1/orgs/${ORG}/workspaces/${ws}/volumes`, {
      name: 'from-v1',
      environment_id: envId,
      max_size_bytes: 1_500_000,
      mount_path: '/srv/v1',
    });
    expect(res.status).toBe(201);
    const id = res.body.volume.volume_id;
    const got = await env('GET', envPath(envId, `/vol-${id}`));
    expect(got.status).toBe(200);
    expect(got.body).toEqual({
      id: `vol-${id}`,
      name: 'from-v1',
      envIdRef: envId,
      companyIdRef: ORG,
      size: 1,
      mountPath: '/srv/v1',
      isDeleted: false,
      createdBy: 'admin',
      modifiedBy: 'admin',
      version: 1,
    });
    const list = await env('GET', envPath(envId));
    expect(list.body.map((v: { id: string }) => v.id)).toEqual([`vol-${id}`]);

    // A create in that environment lands beside it (the workspace holding the environment's volumes).
    const second = await create(envId, { name: 'second' });
    expect((await v1Volume(second.id))?.workspace_id).toBe(ws);
    expect(await workspacesNamed(`env-${envId}`)).toEqual([]);
  });

  it('one workspace per environment: names are unique per environment, not per organisation', async () => {
    const [e1, e2] = [randomUUID(), randomUUID()];
    const a = await create(e1, { name: 'postgres-data' });
    const b = await create(e2, { name: 'postgres-data' });
    const wa = (await v1Volume(a.id))?.workspace_id;
    const wb = (await v1Volume(b.id))?.workspace_id;
    expect(wa).not.toBe(wb);
    const a2 = await create(e1, { name: 'uploads' });
    expect((await v1Volume(a2.id))?.workspace_id).toBe(wa);

    const dup = await env('POST', envPath(e1), { name: 'postgres-data' });
    expect(dup.status).toBe(409);
    expect(Object.keys(dup.body).slice(0, 4)).toEqual(ERROR_FIELDS);
    expect(dup.body).toMatchObject({
      statusCode: 409,
      error: 'Conflict',
      code: 'CONFLICT',
      details: { field: 'name', value: 'postgres-data' },
    });
  });

  it('concurrent first creates in one environment make one workspace', async () => {
    const envId = randomUUID();
    const before = await workspaceCount();
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => env('POST', envPath(envId), { name: `racer-${i}` })));
    expect(results.map((r) => r.status)).toEqual(Array(6).fill(201));
    expect(await workspaceCount()).toBe(before + 1);
    const [ws] = await workspacesNamed(`env-${envId}`);
    const homes = await Promise.all(results.map(async (r) => (await v1Volume(r.body.id))?.workspace_id));
    expect(new Set(homes)).toEqual(new Set([ws?.workspace_id]));
  });
});

describe('environment dialect: list', () => {
  let envId: string;
  let ids: string[];
  beforeAll(async () => {
    envId = randomUUID();
    ids = [];
    for (const name of ['l-one', 'l-two', 'l-three']) ids.push((await create(envId, { name, size: 5 })).id);
    await create(randomUUID(), { name: 'l-elsewhere' });
  });

  it('is a bare array of the environment volumes, oldest first; limit and offset page it', async () => {
    const all = await env('GET', envPath(envId));
    expect(all.status).toBe(200);
    expect(Array.isArray(all.body)).toBe(true);
    expect(all.body.map((v: { id: string }) => v.id)).toEqual(ids);
    for (const v of all.body) expect(Object.keys(v)).toEqual(VOLUME_FIELDS);
    expect(all.headers.get('x-total-count')).toBe('3');
    const cut = await env('GET', envPath(envId, '?limit=2'));
    expect(cut.body.map((v: { id: string }) => v.id)).toEqual(ids.slice(0, 2));
    expect(cut.headers.get('x-total-count')).toBe('3');
    expect((await env('GET', envPath(envId, '?offset=1'))).body.map((v: { id: string }) => v.id)).toEqual(ids.slice(1));
    expect((await env('GET', envPath(envId, '?limit=1&offset=2'))).body.map((v: { id: string }) => v.id)).toEqual(ids.slice(2));
  });

  it('reads past the domain page of 200: all of a large environment, offset and limit across pages', async () => {
    const big = randomUUID();
    const made: string[] = [];
    for (let batch = 0; batch < 21; batch++) {
      const created = await Promise.all(
        Array.from({ length: 10 }, (_, i) => env('POST', envPath(big), { name: `bulk-${String(batch * 10 + i).padStart(3, '0')}` })),
      );
      for (const r of created) expect(r.status).toBe(201);
    }
    // Creation order is id order (uuid v7); the list answers oldest first.
    const rows = await gw.app.database.prisma.volume.findMany({
      where: { environmentId: big },
      orderBy: { id: 'asc' },
      select: { id: true },
    });
    made.push(...rows.map((r) => `vol-${r.id}`));
    expect(made).toHaveLength(210);
    const all = await env('GET', envPath(big));
    expect(all.body.map((v: { id: string }) => v.id)).toEqual(made);
    expect(all.headers.get('x-total-count')).toBe('210');
    const window = await env('GET', envPath(big, '?offset=5&limit=201'));
    expect(window.body.map((v: { id: string }) => v.id)).toEqual(made.slice(5, 206));
    const tail = await env('GET', envPath(big, '?offset=199'));
    expect(tail.body.map((v: { id: string }) => v.id)).toEqual(made.slice(199));
  });

  it('refuses bad paging naming the parameter', async () => {
    for (const [query, field] of [
      ['?limit=0', 'limit'],
      ['?limit=1001', 'limit'],
      ['?limit=abc', 'limit'],
      ['?offset=-1', 'offset'],
      ['?isDeleted=yes', 'isDeleted'],
    ]) {
      const res = await env('GET', envPath(envId, query));
      expect(res.status, query).toBe(422);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(res.body.errors).toEqual([expect.objectContaining({ field, in: 'query' })]);
    }
  });

  it('hides deleted volumes; isDeleted=true lists them (needs volumes:write)', async () => {
    const victim = await create(envId, { name: 'l-deleted' });
    expect((await env('DELETE', envPath(envId, `/${victim.id}`))).status).toBe(204);
    expect((await env('GET', envPath(envId))).body.map((v: { id: string }) => v.id)).toEqual(ids);
    const deleted = await env('GET', envPath(envId, '?isDeleted=true'));
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual([{ ...victim, isDeleted: true, version: 2 }]);
    expect(deleted.headers.get('x-total-count')).toBe('1');
    const refused = await env('GET', envPath(envId, '?isDeleted=true'), undefined, reader);
    expect(refused.status).toBe(403);
    expect(refused.body.details).toEqual({ requiredPermission: 'volumes:write' });
  });
});

describe('environment dialect: update', () => {
  let envId: string;
  let v: Record<string, any>;
  beforeAll(async () => {
    envId = randomUUID();
    v = await create(envId, { name: 'u-data', size: 100, mountPath: '/u/data' });
    await create(envId, { name: 'u-taken' });
  });
  const put = (body: unknown, key = admin) => env('PUT', envPath(envId, `/${v.id}`), body, key);

  it('changes name, size and mountPath; version and modifiedBy follow; /v1 sees it', async () => {
    const res = await put({ name: 'u-renamed', size: 200, mountPath: '/u/renamed' }, volumesOnly);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ id: v.id, name: 'u-renamed', size: 200, mountPath: '/u/renamed', version: 2, createdBy: v.createdBy });
    expect(res.body.modifiedBy).toMatch(/^key:/);
    expect(res.body.modifiedBy).not.toBe(v.createdBy);
    expect(await v1Volume(v.id)).toMatchObject({ name: 'u-renamed', max_size_bytes: 200 * MB, mount_path: '/u/renamed', version: 2 });
    v = res.body;
  });

  it('the size cannot be decreased (409) and nothing changes', async () => {
    const res = await put({ size: 199, name: 'u-shrunk' });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ code: 'CONFLICT', details: { field: 'size', value: 199, current: 200, reason: 'size_decrease' } });
    expect(res.body.message).toMatch(/^Volume size cannot be decreased after creation/);
    expect(await v1Volume(v.id)).toMatchObject({ name: 'u-renamed', max_size_bytes: 200 * MB, version: 2 });
    // null (unlimited) is an increase.
    const unlimited = await put({ size: null });
    expect(unlimited.status).toBe(200);
    expect(unlimited.body).toMatchObject({ size: null, version: 3 });
    const limitedAgain = await put({ size: 300 });
    expect(limitedAgain.status).toBe(409);
    expect(limitedAgain.body.message).toContain('from unlimited to 300 MB');
    v = unlimited.body;
  });

  it('version in the body is a precondition', async () => {
    const stale = await put({ name: 'u-stale', version: 1 });
    expect(stale.status).toBe(409);
    expect(stale.body.details).toMatchObject({ currentVersion: 3, expectedVersion: 1 });
    expect(stale.body.details.precondition).toBeUndefined();
    const fresh = await put({ name: 'u-fresh', version: 3 });
    expect(fresh.status).toBe(200);
    expect(fresh.body).toMatchObject({ name: 'u-fresh', version: 4 });
    v = fresh.body;
  });

  it('a volume read with GET can be sent back whole; read-only fields must not differ', async () => {
    const same = await put({ ...v, createdBy: 'someone', modifiedBy: 'someone', isDeleted: true });
    expect(same.status, JSON.stringify(same.body)).toBe(200);
    expect(same.body).toEqual({ ...v, version: v.version + 1 });
    v = same.body;
    for (const [field, value] of [
      ['id', `vol-${randomUUID()}`],
      ['envIdRef', randomUUID()],
      ['companyIdRef', OTHER_ORG],
    ]) {
      const res = await put({ name: 'u-moved', [field as string]: value });
      expect(res.status, field).toBe(422);
      expect(res.body.errors).toEqual([{ field, in: 'body', message: expect.stringContaining('read-only'), type: 'read_only' }]);
    }
    // The bare uuid is the same id.
    expect((await put({ id: uuidOf(v.id) })).status).toBe(200);
    v = (await env('GET', envPath(envId, `/${v.id}`))).body;
    expect(v.name).toBe('u-fresh');
  });

  it('the current size again changes nothing, even one set in bytes through /v1', async () => {
    const row = await gw.app.database.prisma.volume.findUniqueOrThrow({ where: { id: uuidOf(v.id) } });
    const patched = await gw.call('PATCH', `/v1/orgs/${ORG}/workspaces/${row.workspaceId}/volumes/${row.id}`, {
      max_size_bytes: 7 * MB + 12345,
    });
    expect(patched.status).toBe(200);
    const read = (await env('GET', envPath(envId, `/${v.id}`))).body;
    expect(read.size).toBe(7);
    expect((await put(read)).status).toBe(200);
    expect((await v1Volume(v.id))?.max_size_bytes).toBe(7 * MB + 12345);
    expect((await put({ size: 8 })).body.size).toBe(8);
    v = (await env('GET', envPath(envId, `/${v.id}`))).body;
  });

  it('refuses bad input naming the field as sent, and writes nothing', async () => {
    for (const [body, field, type] of [
      [{ size: 'big' }, 'size', 'int_parsing'],
      [{ size: 1.5 }, 'size', 'int_type'],
      [{ size: 0 }, 'size', 'greater_than_equal'],
      [{ mountPath: 'relative/path' }, 'mountPath', 'value_error'],
      [{ mountPath: '/a/../b' }, 'mountPath', 'value_error'],
      [{ name: '' }, 'name', 'string_too_short'],
      [{ version: 'x' }, 'version', 'int_parsing'],
    ] as const) {
      const res = await put(body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body.errors, JSON.stringify(body)).toEqual([expect.objectContaining({ field, in: 'body', type })]);
    }
    const dup = await put({ name: 'u-taken' });
    expect(dup.status).toBe(409);
    expect(dup.body.details).toMatchObject({ field: 'name' });
    const notJson = await call(gw.url, 'PUT', envPath(envId, `/${v.id}`), 'name=x', {
      key: admin,
      headers: { 'content-type': 'text/plain' },
    });
    expect(notJson.status).toBe(422);
    expect(notJson.body.errors).toEqual([expect.objectContaining({ field: null, type: 'content_type' })]);
    const malformed = await call(gw.url, 'PUT', envPath(envId, `/${v.id}`), '{"name":', { key: admin });
    expect(malformed.status).toBe(422);
    expect(malformed.body.errors).toEqual([expect.objectContaining({ field: null, type: 'json_invalid' })]);
    expect(await v1Volume(v.id)).toMatchObject({ name: v.name, version: v.version });
  });

  it('needs volumes:write', async () => {
    const res = await put({ name: 'u-reader' }, reader);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({
      statusCode: 403,
      error: 'Forbidden',
      code: 'FORBIDDEN',
      details: { requiredPermission: 'volumes:write' },
    });
    expect(await v1Volume(v.id)).toMatchObject({ name: v.name });
  });
});

describe('environment dialect: delete', () => {
  it('soft-deletes (204): 404 everywhere, restorable through /v1; permanent=true removes it now', async () => {
    const envId = randomUUID();
    const v = await create(envId, { name: 'd-soft' });
    const row = await gw.app.database.prisma.volume.findUniqueOrThrow({ where: { id: uuidOf(v.id) } });
    const del = await env('DELETE', envPath(envId, `/${v.id}`));
    expect(del.status).toBe(204);
    expect(del.body).toBe('');
    const gone = await env('GET', envPath(envId, `/${v.id}`));
    expect(gone.status).toBe(404);
    expect(gone.body).toMatchObject({ statusCode: 404, error: 'Not Found', code: 'NOT_FOUND', details: { resourceType: 'volume' } });
    expect((await env('DELETE', envPath(envId, `/${v.id}`))).status).toBe(404);
    expect(await v1Volume(v.id)).toBeNull();
    const restored = await gw.call('POST', `/v1/orgs/${ORG}/workspaces/${row.workspaceId}/volumes/${row.id}/restore`);
    expect(restored.status).toBe(200);
    expect((await env('GET', envPath(envId, `/${v.id}`))).body).toMatchObject({ isDeleted: false, version: 3 });

    const hard = await env('DELETE', envPath(envId, `/${v.id}?permanent=true`));
    expect(hard.status).toBe(204);
    expect(await gw.app.database.prisma.volume.findUnique({ where: { id: row.id } })).toBeNull();
    expect((await env('GET', envPath(envId, '?isDeleted=true'))).body).toEqual([]);
    expect((await env('DELETE', envPath(envId, `/${randomUUID()}?permanent=maybe`))).status).toBe(422);
  });

  it('deletes a mounted volume too (no attachment rule in this API)', async () => {
    const envId = randomUUID();
    const v = await create(envId, { name: 'd-mounted' });
    const row = await gw.app.database.prisma.volume.findUniqueOrThrow({ where: { id: uuidOf(v.id) } });
    const mount = await gw.call('POST', `/v1/orgs/${ORG}/workspaces/${row.workspaceId}/volumes/${row.id}/mounts`, {
      app_id: 'd-app',
      path_pattern: '/**',
      access_level: 'read',
    });
    expect(mount.status).toBe(201);
    expect((await env('DELETE', envPath(envId, `/${v.id}`))).status).toBe(204);
    expect(await v1Volume(v.id)).toBeNull();
  });

  it('needs volumes:write, and a volume of another environment is 404', async () => {
    const envId = randomUUID();
    const v = await create(envId, { name: 'd-kept' });
    const refused = await env('DELETE', envPath(envId, `/${v.id}`), undefined, reader);
    expect(refused.status).toBe(403);
    const elsewhere = await env('DELETE', envPath(randomUUID(), `/${v.id}`));
    expect(elsewhere.status).toBe(404);
    expect(await v1Volume(v.id)).toMatchObject({ deleted_at: null });
  });
});

describe('environment dialect: validate', () => {
  it('answers {valid, errors} with the fields as sent, and writes nothing', async () => {
    const envId = randomUUID();
    await create(envId, { name: 'taken' });
    const [volumes, workspaces] = [await volumeCount(), await workspaceCount()];
    const ok = await env('POST', envPath(envId, '/validate'), { name: 'fresh', size: 10, mountPath: '/ok' });
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ valid: true, errors: [] });

    const bad = await env('POST', envPath(envId, '/validate'), { size: -1, mountPath: 'nope' });
    expect(bad.status).toBe(200);
    expect(bad.body.valid).toBe(false);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['mountPath', 'name', 'size']);
    for (const e of bad.body.errors) expect(Object.keys(e)).toEqual(['field', 'in', 'message', 'type']);

    const dup = await env('POST', envPath(envId, '/validate'), { name: 'taken' });
    expect(dup.body).toEqual({ valid: false, errors: [expect.objectContaining({ field: 'name', in: 'body', type: 'conflict' })] });

    const malformed = await call(gw.url, 'POST', envPath(envId, '/validate'), '{oops', { key: admin });
    expect(malformed.status).toBe(200);
    expect(malformed.body).toEqual({ valid: false, errors: [expect.objectContaining({ field: null, type: 'json_invalid' })] });

    const wrongRef = await env('POST', envPath(envId, '/validate'), { name: 'x', envIdRef: randomUUID() });
    expect(wrongRef.body.errors).toEqual([expect.objectContaining({ field: 'envIdRef', type: 'read_only' })]);

    // An environment without volumes yet: checked the same, no workspace made.
    const newEnv = await env('POST', envPath(randomUUID(), '/validate'), { name: 'first', size: 0 });
    expect(newEnv.body).toEqual({ valid: false, errors: [expect.objectContaining({ field: 'size', type: 'greater_than_equal' })] });
    expect((await env('POST', envPath(randomUUID(), '/validate'), { name: 'first' })).body).toEqual({ valid: true, errors: [] });

    expect([await volumeCount(), await workspaceCount()]).toEqual([volumes, workspaces]);
  });

  it('who may not create gets 401/403 as from create', async () => {
    const envId = randomUUID();
    await create(envId, { name: 'v-auth' });
    const none = await env('POST', envPath(envId, '/validate'), { name: 'x' }, null);
    expect(none.status).toBe(401);
    const readOnly = await env('POST', envPath(envId, '/validate'), { name: 'x' }, reader);
    expect(readOnly.status).toBe(403);
    expect(readOnly.body.details).toEqual({ requiredPermission: 'volumes:write' });
    // A new environment also needs the workspace scopes its first create needs.
    const fresh = await env('POST', envPath(randomUUID(), '/validate'), { name: 'x' }, volumesOnly);
    expect(fresh.status).toBe(403);
    expect(fresh.body.details).toEqual({ requiredPermission: 'workspaces:read' });
  });
});

describe('environment dialect: access and isolation', () => {
  it('401 without a token, in the dialect body', async () => {
    const res = await env('GET', envPath(randomUUID()), undefined, null);
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ statusCode: 401, error: 'Unauthorized', code: 'UNAUTHENTICATED' });
    expect(res.body.details).toBeUndefined();
  });

  it('scopes: reading needs volumes:read; creating volumes:write, and nothing is written when refused', async () => {
    const envId = randomUUID();
    const [volumes, workspaces] = [await volumeCount(), await workspaceCount()];
    const noRead = await env('GET', envPath(envId), undefined, noVolumes);
    expect(noRead.status).toBe(403);
    expect(noRead.body.details).toEqual({ requiredPermission: 'volumes:read' });
    const noWrite = await env('POST', envPath(envId), { name: 'nope' }, reader);
    expect(noWrite.status).toBe(403);
    expect(noWrite.body.details).toEqual({ requiredPermission: 'volumes:write' });
    // A key without the workspace scopes cannot make an environment's first volume (its workspace)...
    const first = await env('POST', envPath(envId), { name: 'first' }, volumesOnly);
    expect(first.status).toBe(403);
    expect(first.body.details).toEqual({ requiredPermission: 'workspaces:read' });
    expect([await volumeCount(), await workspaceCount()]).toEqual([volumes, workspaces]);
    // ...but adds volumes to an environment that has some.
    await create(envId, { name: 'first' });
    const second = await env('POST', envPath(envId), { name: 'second' }, volumesOnly);
    expect(second.status).toBe(201);
  });

  it('bad create input is 422 naming the field, and writes nothing (not even the workspace)', async () => {
    const envId = randomUUID();
    const [volumes, workspaces] = [await volumeCount(), await workspaceCount()];
    for (const [body, field, type] of [
      [{}, 'name', 'missing'],
      [{ name: 'x', size: 'ten' }, 'size', 'int_parsing'],
      [{ name: 'x', size: 8_589_934_592 }, 'size', 'less_than_equal'],
      [{ name: 'x', mountPath: '/' }, 'mountPath', 'value_error'],
      [{ name: 'x', companyIdRef: OTHER_ORG }, 'companyIdRef', 'read_only'],
    ] as const) {
      const res = await env('POST', envPath(envId), body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body.errors, JSON.stringify(body)).toEqual([expect.objectContaining({ field, in: 'body', type })]);
      expect(res.body.message).toContain(field);
    }
    expect([await volumeCount(), await workspaceCount()]).toEqual([volumes, workspaces]);
  });

  it("another organisation's volume is 404, and its environment lists nothing", async () => {
    const envId = randomUUID();
    const v = await create(envId, { name: 'private' });
    for (const [method, body] of [
      ['GET', undefined],
      ['PUT', { name: 'stolen' }],
      ['DELETE', undefined],
    ] as const) {
      const res = await env(method, envPath(envId, `/${v.id}`), body, stranger);
      expect(res.status, method).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
    }
    expect((await env('GET', envPath(envId), undefined, stranger)).body).toEqual([]);
    expect(await v1Volume(v.id)).toMatchObject({ name: 'private', deleted_at: null });
  });

  it('unknown and malformed ids are 404', async () => {
    const envId = randomUUID();
    await create(envId, { name: 'exists' });
    for (const id of [`vol-${randomUUID()}`, randomUUID(), 'vol-nope', 'nope']) {
      const res = await env('GET', envPath(envId, `/${id}`));
      expect(res.status, id).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
    }
  });

  it('an app key sees only the volumes mounted for it, and cannot create', async () => {
    const envId = randomUUID();
    const seen = await create(envId, { name: 'mounted' });
    const unseen = await create(envId, { name: 'unmounted' });
    const row = await gw.app.database.prisma.volume.findUniqueOrThrow({ where: { id: uuidOf(seen.id) } });
    const mount = await gw.call('POST', `/v1/orgs/${ORG}/workspaces/${row.workspaceId}/volumes/${row.id}/mounts`, {
      app_id: 'env-bot',
      path_pattern: '/**',
      access_level: 'read',
    });
    expect(mount.status).toBe(201);
    const bot = await createKey(gw, ORG, ['volumes:read', 'volumes:write'], 'env-bot');
    const list = await env('GET', envPath(envId), undefined, bot);
    expect(list.body.map((v: { id: string }) => v.id)).toEqual([seen.id]);
    expect((await env('GET', envPath(envId, `/${seen.id}`), undefined, bot)).status).toBe(200);
    expect((await env('GET', envPath(envId, `/${unseen.id}`), undefined, bot)).status).toBe(404);
    expect((await env('POST', envPath(envId), { name: 'bot-made' }, bot)).status).toBe(403);
    // A read mount does not let it change the volume.
    expect((await env('PUT', envPath(envId, `/${seen.id}`), { name: 'bot-renamed' }, bot)).status).toBe(403);
  });

  it('the platform key names the organisation in X-Org-Id', async () => {
    const envId = randomUUID();
    const missing = await env('POST', envPath(envId), { name: 'platform-made' }, ADMIN_KEY);
    expect(missing.status).toBe(422);
    expect(missing.body.errors).toEqual([expect.objectContaining({ field: 'X-Org-Id', in: 'header', type: 'missing' })]);
    expect((await env('GET', envPath(envId), undefined, ADMIN_KEY)).status).toBe(422);

    const made = await env('POST', envPath(envId), { name: 'platform-made', size: 1 }, ADMIN_KEY, { 'X-Org-Id': ORG });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ companyIdRef: ORG, createdBy: 'admin', modifiedBy: 'admin' });
    const read = await env('GET', envPath(envId, `/${made.body.id}`), undefined, ADMIN_KEY, { 'X-Org-Id': ORG });
    expect(read.body).toEqual(made.body);
    // Named another organisation, the volume is not there.
    const wrong = await env('GET', envPath(envId, `/${made.body.id}`), undefined, ADMIN_KEY, { 'X-Org-Id': OTHER_ORG });
    expect(wrong.status).toBe(404);
    // The org key sees what the platform key made in its organisation.
    expect((await env('GET', envPath(envId))).body.map((v: { id: string }) => v.id)).toEqual([made.body.id]);
  });
});
