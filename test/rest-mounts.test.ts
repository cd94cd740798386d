import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { matchesPattern } from '../src/domain/shared/path-patterns.js';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';

const MOUNT_FIELDS = ['mount_id', 'volume_id', 'app_id', 'path_pattern', 'access_level', 'granted_by', 'created_at'];
const ERROR_FIELDS = ['error', 'message', 'details', 'timestamp', 'status_code'];
const MISSING = '01900000-0000-7000-8000-000000000000';

let gw: TestGateway;
let ws: string;
const mountsOf = (volumeId: string, org = 'acme', wsId = ws) => `/v1/orgs/${org}/workspaces/${wsId}/volumes/${volumeId}/mounts`;

async function newVolume(name: string, org = 'acme', wsId = ws): Promise<string> {
  const res = await gw.call('POST', `/v1/orgs/${org}/workspaces/${wsId}/volumes`, { name });
  expect(res.status).toBe(201);
  return res.body.volume.volume_id;
}
async function mount(volumeId: string, body: Record<string, unknown>) {
  const res = await gw.call('POST', mountsOf(volumeId), body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.mount;
}
const mountRows = async (volumeId: string) =>
  (await gw.app.database.prisma.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM mounts WHERE volume_id = $1', volumeId))[0]
    ?.n;

beforeAll(async () => {
  gw = await startGateway();
  const res = await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'main' });
  ws = res.body.workspace_id;
});
afterAll(async () => {
  await gw?.stop();
});

describe('mounts REST', () => {
  it('creates a read mount over everything by default, granted by the platform admin', async () => {
    const vol = await newVolume('defaults');
    const res = await gw.call('POST', mountsOf(vol), { app_id: 'bot' });
    expect(res.status).toBe(201);
    expect(Object.keys(res.body)).toEqual(['message', 'mount']);
    expect(res.body.message).toBe('Mount created successfully');
    const m = res.body.mount;
    expect(Object.keys(m)).toEqual(MOUNT_FIELDS);
    expect(m).toMatchObject({ volume_id: vol, app_id: 'bot', path_pattern: '/**', access_level: 'read', granted_by: 'admin' });
    expect(new Date(m.created_at).toISOString()).toBe(m.created_at);
    for (const path of ['/a', '/notes/2024/plan.md', '/.hidden/x', '/a b/ü.txt'])
      expect(matchesPattern(m.path_pattern, path), path).toBe(true);

    const list = await gw.call('GET', mountsOf(vol));
    expect(list.status).toBe(200);
    expect(Object.keys(list.body)).toEqual(['mounts']);
    expect(list.body.mounts).toEqual([m]);
  });

  it('records the org key that granted a mount and lists every mount of the volume in order', async () => {
    const made = await gw.call('POST', '/v1/orgs/acme/api-keys', { name: 'granter', scopes: ['volumes:write'] });
    const vol = await newVolume('granted');
    const res = await gw.call(
      'POST',
      mountsOf(vol),
      { app_id: 'agent-1', path_pattern: '/notes/**', access_level: 'write' },
      made.body.api_key,
    );
    expect(res.status).toBe(201);
    expect(res.body.mount).toMatchObject({ app_id: 'agent-1', access_level: 'write', granted_by: `key:${made.body.key.key_id}` });
    const second = await mount(vol, { app_id: 'agent-2', access_level: 'admin' });
    const list = await gw.call('GET', mountsOf(vol));
    expect(list.body.mounts.map((x: { mount_id: string }) => x.mount_id)).toEqual([res.body.mount.mount_id, second.mount_id]);
    expect(list.body.mounts.map((x: { access_level: string }) => x.access_level)).toEqual(['write', 'admin']);
  });

  it('normalises path patterns to absolute globs', async () => {
    const vol = await newVolume('normalised');
    const cases: [string, string][] = [
      ['notes/', '/notes/**'],
      ['**', '/**'],
      ['/', '/**'],
      ['a/b.md', '/a/b.md'],
      ['  /trimmed/*.md  ', '/trimmed/*.md'],
      ['/docs/[abc]/**', '/docs/[abc]/**'],
    ];
    for (const [i, [input, expected]] of cases.entries()) {
      const m = await mount(vol, { app_id: `app-${i}`, path_pattern: input });
      expect(m.path_pattern, input).toBe(expected);
    }
    expect(matchesPattern('/notes/**', '/notes/a/b.md')).toBe(true);
    expect(matchesPattern('/notes/**', '/notesx/a')).toBe(false);
    expect(matchesPattern('/trimmed/*.md', '/trimmed/sub/x.md')).toBe(false);
  });

  it('422 naming path_pattern for patterns that could escape or are not globs, and writes nothing', async () => {
    const vol = await newVolume('rejects');
    const bad = [
      '/a/../b',
      '../x',
      '/notes/..',
      '/./a',
      '/a/./b',
      '/a//b',
      '/a\nb',
      '/tab\there',
      '/del\u007f',
      '/notes/[abc',
      `/${'a'.repeat(1024)}`,
      `/${'é'.repeat(512)}`,
      'a'.repeat(1024), // 1025 bytes once made absolute
      `/${'a'.repeat(1021)}/`, // 1026 bytes once `**` is appended
      '!x',
      '!/notes/**',
    ];
    for (const pattern of bad) {
      const res = await gw.call('POST', mountsOf(vol), { app_id: 'bot', path_pattern: pattern });
      expect(res.status, JSON.stringify(pattern)).toBe(422);
      expect(Object.keys(res.body.detail[0])).toEqual(['loc', 'msg', 'type', 'input', 'ctx']);
      expect(res.body.detail[0].loc, JSON.stringify(pattern)).toEqual(['body', 'path_pattern']);
      expect(res.body.detail[0].msg).toMatch(/^path_pattern /);
      expect(res.body.detail[0].input).toBe(pattern);
    }
    // NUL is refused by the input policy before the pattern rules see it.
    const nul = await gw.call('POST', mountsOf(vol), { app_id: 'bot', path_pattern: 'a\u0000b' });
    expect(nul.body.detail).toEqual([
      { loc: ['body', 'path_pattern'], msg: 'must not contain NUL characters', type: 'string_nul', input: 'a\u0000b', ctx: {} },
    ]);
    for (const [app_id, path_pattern] of [
      ['bot', `/${'a'.repeat(1023)}`],
      ['bot2', 'a'.repeat(1023)],
      ['bot3', `/${'a'.repeat(1020)}/`],
    ]) {
      const ok = await gw.call('POST', mountsOf(vol), { app_id, path_pattern });
      expect(ok.status, app_id).toBe(201);
      expect(Buffer.byteLength(ok.body.mount.path_pattern)).toBe(1024);
    }
    expect(await mountRows(vol)).toBe(3);
  });

  it('422 for other bad fields', async () => {
    const vol = await newVolume('badfields');
    const cases: [unknown, (string | number)[], string][] = [
      [{}, ['body', 'app_id'], 'missing'],
      [{ app_id: '' }, ['body', 'app_id'], 'string_too_short'],
      [{ app_id: 'has space' }, ['body', 'app_id'], 'string_pattern_mismatch'],
      [{ app_id: 7 }, ['body', 'app_id'], 'string_type'],
      [{ app_id: 'bot', access_level: 'owner' }, ['body', 'access_level'], 'enum'],
      [{ app_id: 'bot', access_level: 'READ' }, ['body', 'access_level'], 'enum'],
      [{ app_id: 'bot', path_pattern: 42 }, ['body', 'path_pattern'], 'string_type'],
    ];
    for (const [body, loc, type] of cases) {
      const res = await gw.call('POST', mountsOf(vol), body);
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.body.detail[0], JSON.stringify(body)).toMatchObject({ loc, type });
    }
    expect(await mountRows(vol)).toBe(0);
  });

  it('409 for the same app and pattern twice, even spelled differently or at another level', async () => {
    const vol = await newVolume('dupes');
    await mount(vol, { app_id: 'bot', path_pattern: '/notes/**' });
    for (const body of [
      { app_id: 'bot', path_pattern: '/notes/**' },
      { app_id: 'bot', path_pattern: 'notes/' },
      { app_id: 'bot', path_pattern: '/notes/**', access_level: 'admin' },
    ]) {
      const res = await gw.call('POST', mountsOf(vol), body);
      expect(res.status, JSON.stringify(body)).toBe(409);
      expect(Object.keys(res.body)).toEqual(ERROR_FIELDS);
      expect(res.body).toMatchObject({ error: 'CONFLICT', status_code: 409 });
    }
    await mount(vol, { app_id: 'bot', path_pattern: '/other/**' });
    await mount(vol, { app_id: 'other-bot', path_pattern: '/notes/**' });
    const elsewhere = await newVolume('dupes-elsewhere');
    await mount(elsewhere, { app_id: 'bot', path_pattern: '/notes/**' });
    expect(await mountRows(vol)).toBe(3);
  });

  it('deletes a mount once; unknown mounts and mounts of another volume are 404', async () => {
    const vol = await newVolume('deletes');
    const other = await newVolume('deletes-other');
    const keep = await mount(vol, { app_id: 'keep' });
    const gone = await mount(vol, { app_id: 'gone' });
    const res = await gw.call('DELETE', `${mountsOf(vol)}/${gone.mount_id}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ message: 'Mount removed successfully' });
    expect((await gw.call('GET', mountsOf(vol))).body.mounts).toEqual([keep]);

    for (const [volumeId, mountId] of [
      [vol, gone.mount_id],
      [vol, MISSING],
      [vol, 'not-a-uuid'],
      [other, keep.mount_id],
    ]) {
      const miss = await gw.call('DELETE', `${mountsOf(volumeId as string)}/${mountId}`);
      expect(miss.status, `${volumeId}/${mountId}`).toBe(404);
      expect(miss.body).toMatchObject({ error: 'RESOURCE_NOT_FOUND', details: { resource_type: 'mount', resource_id: mountId } });
    }
    const nul = await gw.call('DELETE', `${mountsOf(vol)}/%00`);
    expect(nul.status).toBe(422);
    expect(nul.body.detail[0]).toMatchObject({ loc: ['path', 'mount_id'], type: 'value_error' });
    expect((await gw.call('GET', mountsOf(vol))).body.mounts).toEqual([keep]);
  });
});

describe('mounts REST access', () => {
  it('404 for unknown volumes or workspaces and for a volume addressed through the wrong workspace', async () => {
    const vol = await newVolume('addressed');
    const m = await mount(vol, { app_id: 'bot' });
    const otherWs = (await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'other' })).body.workspace_id;
    for (const base of [mountsOf(MISSING), mountsOf(vol, 'acme', MISSING), mountsOf(vol, 'acme', otherWs)]) {
      for (const [method, route, body] of [
        ['GET', base],
        ['POST', base, { app_id: 'intruder' }],
        ['DELETE', `${base}/${m.mount_id}`],
      ] as [string, string, unknown?][]) {
        const res = await gw.call(method, route, body);
        expect(res.status, `${method} ${route}`).toBe(404);
        expect(res.body.error).toBe('RESOURCE_NOT_FOUND');
      }
    }
    expect((await gw.call('GET', mountsOf(vol))).body.mounts).toEqual([m]);
  });

  it('401 without a key; 403 names volumes:read or volumes:write', async () => {
    const vol = await newVolume('guarded');
    const m = await mount(vol, { app_id: 'bot' });
    const routes: [string, string, unknown?][] = [
      ['GET', mountsOf(vol)],
      ['POST', mountsOf(vol), { app_id: 'sneaky' }],
      ['DELETE', `${mountsOf(vol)}/${m.mount_id}`],
    ];
    const noVolumes = await createKey(gw, 'acme', ['workspaces:read', 'entries:write']);
    const readOnly = await createKey(gw, 'acme', ['volumes:read']);
    for (const [method, route, body] of routes) {
      const anon = await gw.call(method, route, body, null);
      expect(anon.status).toBe(401);
      expect(anon.body.error).toBe('AUTHENTICATION_FAILED');
      const needs = method === 'GET' ? 'volumes:read' : 'volumes:write';
      for (const key of method === 'GET' ? [noVolumes] : [noVolumes, readOnly]) {
        const res = await gw.call(method, route, body, key);
        expect(res.status, `${method} ${route}`).toBe(403);
        expect(res.body).toMatchObject({ error: 'FORBIDDEN', details: { required_permission: needs } });
      }
    }
    expect((await gw.call('GET', mountsOf(vol), undefined, readOnly)).body.mounts).toEqual([m]);
  });

  it("another org's key gets 404 on every mount route", async () => {
    const globexWs = (await gw.call('POST', '/v1/orgs/globex/workspaces', { name: 'g' })).body.workspace_id;
    const gVol = await newVolume('secret', 'globex', globexWs);
    const gMount = (await gw.call('POST', mountsOf(gVol, 'globex', globexWs), { app_id: 'bot' })).body.mount;
    const acmeAdmin = await createKey(gw, 'acme', ['admin']);
    for (const org of ['globex', 'acme']) {
      for (const [method, route, body] of [
        ['GET', mountsOf(gVol, org, globexWs)],
        ['POST', mountsOf(gVol, org, globexWs), { app_id: 'intruder', access_level: 'admin' }],
        ['DELETE', `${mountsOf(gVol, org, globexWs)}/${gMount.mount_id}`],
      ] as [string, string, unknown?][]) {
        const res = await gw.call(method, route, body, acmeAdmin);
        expect(res.status, `${method} ${route}`).toBe(404);
        expect(res.body.error).toBe('RESOURCE_NOT_FOUND');
      }
    }
    expect((await gw.call('GET', mountsOf(gVol, 'globex', globexWs))).body.mounts).toEqual([gMount]);
  });
});
