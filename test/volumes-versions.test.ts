import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';
import { request } from './helpers/http.js';

let gw: TestGateway;
let ws: string;
let vols: string;
const ORG = 'versions';
const codeOf = (body: any) => body.errors?.[0]?.extensions?.code;

async function volumeCount(): Promise<number> {
  const rows = await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>(
    'SELECT count(*)::int AS n FROM volumes WHERE workspace_id = $1',
    ws,
  );
  return rows[0]?.n ?? -1;
}

beforeAll(async () => {
  gw = await startGateway();
  ws = (await gw.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'v' })).body.workspace_id;
  vols = `/v1/orgs/${ORG}/workspaces/${ws}/volumes`;
});
afterAll(async () => {
  await gw?.stop();
});

describe('versions, created_by and modified_by', () => {
  it('every change increments version and records who made it; GET answers it as the ETag', async () => {
    const creator = await createKey(gw, ORG, ['volumes:read', 'volumes:write']);
    const editor = await createKey(gw, ORG, ['volumes:read', 'volumes:write']);
    const ids = (await gw.call('GET', `/v1/orgs/${ORG}/api-keys`)).body.api_keys.map((k: { key_id: string }) => k.key_id);
    const [creatorId, editorId] = ids.slice(-2);
    const made = await gw.call('POST', vols, { name: 'tracked' }, creator);
    const v = made.body.volume;
    expect(v).toMatchObject({ version: 1, created_by: `key:${creatorId}`, modified_by: `key:${creatorId}` });
    const url = `${vols}/${v.volume_id}`;
    expect((await gw.call('GET', url)).headers.get('etag')).toBe('"1"');

    const edited = await gw.call('PATCH', url, { description: 'edited' }, editor);
    expect(edited.body.volume).toMatchObject({ version: 2, created_by: `key:${creatorId}`, modified_by: `key:${editorId}` });
    expect(edited.headers.get('etag')).toBe('"2"');
    expect((await gw.call('POST', `${url}/make-shared`)).body.volume).toMatchObject({ version: 3, modified_by: 'admin' });
    const got = await gw.call('GET', url);
    expect(got.headers.get('etag')).toBe('"3"');
    expect(got.body).toMatchObject({ version: 3, created_by: `key:${creatorId}`, modified_by: 'admin' });
  });

  it('If-Match or expected_version makes a PATCH conditional: 409 and nothing written on a mismatch', async () => {
    const v = (await gw.call('POST', vols, { name: 'guarded' })).body.volume;
    const url = `${vols}/${v.volume_id}`;
    const patch = (body: unknown, headers: Record<string, string> = {}) => request(gw, 'PATCH', url, { body, headers });

    expect((await patch({ description: 'one' }, { 'if-match': '"1"' })).body.volume.version).toBe(2);
    const stale = await patch({ description: 'lost' }, { 'if-match': '"1"' });
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({
      error: 'CONFLICT',
      status_code: 409,
      details: { current_version: 2, expected_version: 1, precondition: 'If-Match' },
    });
    expect((await patch({ description: 'lost', expected_version: 1 })).status).toBe(409);
    // Header and body must both hold when both are given.
    expect((await patch({ description: 'lost', expected_version: 1 }, { 'if-match': '2' })).status).toBe(409);
    expect((await gw.call('GET', url)).body).toMatchObject({ description: 'one', version: 2 });

    expect((await patch({ description: 'two', expected_version: 2 })).body.volume.version).toBe(3);
    expect((await patch({ description: 'three' }, { 'if-match': 'W/"3"' })).body.volume.version).toBe(4);
    expect((await patch({ description: 'four' }, { 'if-match': '*' })).body.volume.version).toBe(5);

    for (const [body, headers, loc] of [
      [{ description: 'x' }, { 'if-match': 'yesterday' }, ['header', 'if-match']],
      [{ expected_version: 0 }, {}, ['body', 'expected_version']],
      [{ expected_version: '5' }, {}, ['body', 'expected_version']],
      [{ expected_version: 1.5 }, {}, ['body', 'expected_version']],
    ] as [unknown, Record<string, string>, string[]][]) {
      const res = await patch(body, headers);
      expect(res.status, JSON.stringify([body, headers])).toBe(422);
      expect(res.body.detail[0].loc).toEqual(loc);
    }
    expect((await gw.call('GET', url)).body.version).toBe(5);
  });

  it('GraphQL exposes version, createdBy and modifiedBy and takes expectedVersion', async () => {
    const v = (await gw.call('POST', vols, { name: 'gql-versioned' })).body.volume;
    const update = (expectedVersion: number) =>
      gw.gql(
        `mutation($id: ID!, $ev: Int) { updateVolume(id: $id, input: { description: "d", expectedVersion: $ev }) { version createdBy modifiedBy } }`,
        {
          id: v.volume_id,
          ev: expectedVersion,
        },
      );
    const ok = await update(1);
    expect(ok.body.data.updateVolume).toEqual({ version: 2, createdBy: 'admin', modifiedBy: 'admin' });
    const stale = await update(1);
    expect(codeOf(stale.body)).toBe('CONFLICT');
    expect(stale.body.errors[0].extensions).toMatchObject({ current_version: 2, expected_version: 1 });
    expect(codeOf((await update(0)).body)).toBe('VALIDATION_FAILED');
  });
});

describe('quotas cannot drop below usage', () => {
  it('lowering max_size_bytes or max_file_count below what is stored is a 409 (REST and GraphQL)', async () => {
    const v = (await gw.call('POST', vols, { name: 'full' })).body.volume;
    const url = `${vols}/${v.volume_id}`;
    expect((await gw.call('PUT', `${url}/entries/a.txt`, { content_text: 'hello' })).status).toBe(201);
    expect((await gw.call('PUT', `${url}/entries/b.txt`, { content_text: 'world!' })).status).toBe(201);

    for (const [body, field] of [
      [{ max_size_bytes: 10 }, 'max_size_bytes'],
      [{ max_file_count: 1 }, 'max_file_count'],
      [{ max_size_bytes: 0, description: 'not applied' }, 'max_size_bytes'],
    ] as const) {
      const res = await gw.call('PATCH', url, body);
      expect(res.status, JSON.stringify(body)).toBe(409);
      expect(res.body).toMatchObject({ error: 'CONFLICT', details: { field } });
    }
    const after = (await gw.call('GET', url)).body;
    expect(after).toMatchObject({
      description: null,
      max_size_bytes: null,
      max_file_count: null,
      version: 1,
      used_bytes: 11,
      entry_count: 2,
    });
    // Exactly the usage is allowed, and so is raising or clearing it.
    expect((await gw.call('PATCH', url, { max_size_bytes: 11, max_file_count: 2 })).status).toBe(200);
    expect((await gw.call('PATCH', url, { max_size_bytes: null })).status).toBe(200);

    const gql = await gw.gql(`mutation($id: ID!) { updateVolume(id: $id, input: { maxFileCount: 0 }) { id } }`, { id: v.volume_id });
    expect(codeOf(gql.body)).toBe('CONFLICT');
    expect(gql.body.errors[0].extensions).toMatchObject({ field: 'max_file_count', limit: 0, used: 2 });
  });
});

describe('dry-run validation', () => {
  const validate = (body: unknown, key?: string | null) => gw.call('POST', `${vols}/validate`, body, key);

  it('answers {valid, errors} with exactly the 422 items create would give, writing nothing', async () => {
    const before = await volumeCount();
    expect((await validate({ name: 'fresh', tags: ['a'], max_size_bytes: 1024 })).body).toEqual({ valid: true, errors: [] });
    for (const body of [
      {},
      { name: '' },
      { name: 'ok', indexing_mode: 'sometimes', tags: 'nope' },
      { name: 'ok', max_size_bytes: -1 },
      { name: 'ok', max_file_count: 1.5 },
      { name: 'ok', chunking_strategy: 'semantic' },
      [1],
    ]) {
      const dry = await validate(body);
      const real = await gw.call('POST', vols, body);
      expect(real.status, JSON.stringify(body)).toBe(422);
      expect(dry.status).toBe(200);
      expect(dry.body, JSON.stringify(body)).toEqual({ valid: false, errors: real.body.detail });
    }
    expect(await volumeCount()).toBe(before);
  });

  it('runs the checks against existing volumes: a duplicate name is invalid, as create answers 409', async () => {
    await gw.call('POST', vols, { name: 'taken' });
    const dry = await validate({ name: ' taken ' });
    expect(dry.body.valid).toBe(false);
    expect(dry.body.errors).toEqual([
      { loc: ['body', 'name'], msg: "A volume named 'taken' already exists in this workspace", type: 'conflict', input: 'taken', ctx: {} },
    ]);
    expect((await gw.call('POST', vols, { name: ' taken ' })).status).toBe(409);
  });

  it('malformed JSON is an invalid body, not an error', async () => {
    const res = await validate('{"name": ');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      valid: false,
      errors: [{ loc: ['body'], msg: 'JSON decode error', type: 'json_invalid', input: {}, ctx: {} }],
    });
  });

  it('who may not create may not validate: 401, 403 (scope, app keys), 404 (workspace, org)', async () => {
    expect((await validate({ name: 'x' }, null)).status).toBe(401);
    const reader = await createKey(gw, ORG, ['volumes:read']);
    const denied = await validate({ name: 'x' }, reader);
    expect(denied.status).toBe(403);
    expect(denied.body.details.required_permission).toBe('volumes:write');
    // Authorisation comes before the body is read: a bad body does not tell a stranger anything.
    expect((await validate('{', reader)).status).toBe(403);
    const app = await createKey(gw, ORG, ['volumes:write'], 'bot');
    expect((await validate({ name: 'x' }, app)).status).toBe(403);
    expect(
      (await gw.call('POST', `/v1/orgs/${ORG}/workspaces/01900000-0000-7000-8000-000000000000/volumes/validate`, { name: 'x' })).status,
    ).toBe(404);
    const outsider = await createKey(gw, 'other-org', ['admin']);
    expect((await validate({ name: 'x' }, outsider)).status).toBe(404);
  });

  it('GraphQL validateVolume gives the same verdicts, named as in the input', async () => {
    const q = `mutation($ws: ID!, $input: CreateVolumeInput!) { validateVolume(workspaceId: $ws, input: $input) { valid errors { path message type } } }`;
    const before = await volumeCount();
    expect((await gw.gql(q, { ws, input: { name: 'gql-fresh' } })).body.data.validateVolume).toEqual({ valid: true, errors: [] });
    const dup = await gw.gql(q, { ws, input: { name: 'taken' } });
    expect(dup.body.data.validateVolume).toEqual({
      valid: false,
      errors: [{ path: ['input', 'name'], message: "A volume named 'taken' already exists in this workspace", type: 'conflict' }],
    });
    const bad = await gw.gql(q, { ws, input: { name: 'ok', maxSizeBytes: -5 } });
    expect(bad.body.data.validateVolume.errors).toEqual([
      { path: ['input', 'maxSizeBytes'], message: 'Input should be greater than or equal to 0', type: 'greater_than_equal' },
    ]);
    expect(await volumeCount()).toBe(before);
    const reader = await createKey(gw, ORG, ['volumes:read']);
    expect(codeOf((await gw.gql(q, { ws, input: { name: 'x' } }, reader)).body)).toBe('FORBIDDEN');
  });
});
