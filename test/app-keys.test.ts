import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';

/**
 * The app-key access matrix: a key with `app_id` reaches only what is mounted for its app, and
 * changes a volume or its mounts only through an `admin` mount.
 */
let gw: TestGateway;
let bot: string; // app key of app "bot": workspaces:read, volumes:read, volumes:write
let botKeyId: string;
const ids = {} as Record<'ws1' | 'ws2' | 'ws3' | 'read' | 'write' | 'admin' | 'unmounted' | 'other', string>;
const wsPath = (ws: string, org = 'acme') => `/v1/orgs/${org}/workspaces/${ws}`;
const volPath = (ws: string, vol: string) => `${wsPath(ws)}/volumes/${vol}`;

async function workspace(name: string, org = 'acme'): Promise<string> {
  const res = await gw.call('POST', `/v1/orgs/${org}/workspaces`, { name });
  expect(res.status).toBe(201);
  return res.body.workspace_id;
}
async function volume(ws: string, name: string, org = 'acme'): Promise<string> {
  const res = await gw.call('POST', `${wsPath(ws, org)}/volumes`, { name });
  expect(res.status).toBe(201);
  return res.body.volume.volume_id;
}
async function mount(ws: string, vol: string, app_id: string, access_level = 'read', org = 'acme', path_pattern = '/**'): Promise<string> {
  const res = await gw.call('POST', `${wsPath(ws, org)}/volumes/${vol}/mounts`, { app_id, access_level, path_pattern });
  expect(res.status).toBe(201);
  return res.body.mount.mount_id;
}
const names = (list: { name: string }[]) => list.map((x) => x.name).sort();
function expectForbidden(res: { status: number; body: any }, permission: string, what: string) {
  expect(res.status, what).toBe(403);
  expect(res.body, what).toMatchObject({ error: 'FORBIDDEN', status_code: 403, details: { required_permission: permission } });
}

beforeAll(async () => {
  gw = await startGateway();
  ids.ws1 = await workspace('mounted');
  ids.ws2 = await workspace('other-app-only');
  ids.ws3 = await workspace('empty');
  ids.read = await volume(ids.ws1, 'read');
  ids.write = await volume(ids.ws1, 'write');
  ids.admin = await volume(ids.ws1, 'admin');
  ids.unmounted = await volume(ids.ws1, 'unmounted');
  ids.other = await volume(ids.ws2, 'other');
  await mount(ids.ws1, ids.read, 'bot', 'read');
  await mount(ids.ws1, ids.read, 'spy', 'admin');
  await mount(ids.ws1, ids.write, 'bot', 'write');
  await mount(ids.ws1, ids.admin, 'bot', 'admin');
  await mount(ids.ws1, ids.unmounted, 'spy', 'admin');
  await mount(ids.ws2, ids.other, 'spy', 'admin');
  const made = await gw.call('POST', '/v1/orgs/acme/api-keys', {
    name: 'bot',
    scopes: ['workspaces:read', 'volumes:read', 'volumes:write'],
    app_id: 'bot',
  });
  bot = made.body.api_key;
  botKeyId = made.body.key.key_id;
});
afterAll(async () => {
  await gw?.stop();
});

describe('app key visibility', () => {
  it('sees only workspaces holding a volume mounted for its app, with a matching total', async () => {
    const list = await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, bot);
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({ total: 1, has_more: false, next_cursor: null });
    expect(list.body.workspaces.map((w: { workspace_id: string }) => w.workspace_id)).toEqual([ids.ws1]);
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined)).body.total).toBe(3);

    expect((await gw.call('GET', wsPath(ids.ws1), undefined, bot)).status).toBe(200);
    for (const ws of [ids.ws2, ids.ws3]) {
      const res = await gw.call('GET', wsPath(ws), undefined, bot);
      expect(res.status).toBe(404);
      expect(res.body.details).toEqual({ resource_type: 'workspace', resource_id: ws });
    }
  });

  it('sees only mounted volumes, in lists and by id', async () => {
    const list = await gw.call('GET', `${wsPath(ids.ws1)}/volumes`, undefined, bot);
    expect(list.status).toBe(200);
    expect(list.body.total).toBe(3);
    expect(names(list.body.volumes)).toEqual(['admin', 'read', 'write']);
    const paged = await gw.call('GET', `${wsPath(ids.ws1)}/volumes?limit=2`, undefined, bot);
    expect(paged.body).toMatchObject({ total: 3, has_more: true });
    const rest = await gw.call('GET', `${wsPath(ids.ws1)}/volumes?limit=2&cursor=${paged.body.next_cursor}`, undefined, bot);
    expect(rest.body).toMatchObject({ total: 3, has_more: false, next_cursor: null });
    expect(names([...paged.body.volumes, ...rest.body.volumes])).toEqual(['admin', 'read', 'write']);

    expect((await gw.call('GET', volPath(ids.ws1, ids.read), undefined, bot)).body.name).toBe('read');
    for (const route of [
      volPath(ids.ws1, ids.unmounted),
      volPath(ids.ws2, ids.other),
      `${wsPath(ids.ws2)}/volumes`,
      `${wsPath(ids.ws3)}/volumes`,
    ]) {
      const res = await gw.call('GET', route, undefined, bot);
      expect(res.status, route).toBe(404);
      expect(res.body.error).toBe('RESOURCE_NOT_FOUND');
    }
  });

  it('sees only its own mounts, and none of unmounted volumes', async () => {
    const mine = await gw.call('GET', `${volPath(ids.ws1, ids.read)}/mounts`, undefined, bot);
    expect(mine.status).toBe(200);
    expect(mine.body.mounts.map((m: { app_id: string }) => m.app_id)).toEqual(['bot']);
    const all = await gw.call('GET', `${volPath(ids.ws1, ids.read)}/mounts`);
    expect(all.body.mounts.map((m: { app_id: string }) => m.app_id).sort()).toEqual(['bot', 'spy']);
    expect((await gw.call('GET', `${volPath(ids.ws1, ids.unmounted)}/mounts`, undefined, bot)).status).toBe(404);
  });

  it("does not reach another org's volumes mounted for an app of the same name", async () => {
    const gWs = await workspace('globex-ws', 'globex');
    const gVol = await volume(gWs, 'globex-vol', 'globex');
    await mount(gWs, gVol, 'bot', 'admin', 'globex');
    for (const base of [`${wsPath(gWs, 'globex')}/volumes/${gVol}`, `${wsPath(gWs)}/volumes/${gVol}`]) {
      for (const [method, route, body] of [
        ['GET', base],
        ['PATCH', base, { name: 'pwned' }],
        ['GET', `${base}/mounts`],
        ['POST', `${base}/mounts`, { app_id: 'bot', access_level: 'admin' }],
      ] as [string, string, unknown?][]) {
        expect((await gw.call(method, route, body, bot)).status, `${method} ${route}`).toBe(404);
      }
    }
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, bot)).body.total).toBe(1);
  });
});

describe('app key writes go through an admin mount', () => {
  it('read and write mounts cannot change a volume or its mounts (403 volume:admin)', async () => {
    for (const vol of [ids.read, ids.write]) {
      const own = (await gw.call('GET', `${volPath(ids.ws1, vol)}/mounts`, undefined, bot)).body.mounts[0].mount_id;
      expectForbidden(await gw.call('PATCH', volPath(ids.ws1, vol), { description: 'x' }, bot), 'volume:admin', `PATCH ${vol}`);
      expectForbidden(await gw.call('DELETE', volPath(ids.ws1, vol), undefined, bot), 'volume:admin', `DELETE ${vol}`);
      const grant = await gw.call(
        'POST',
        `${volPath(ids.ws1, vol)}/mounts`,
        { app_id: 'bot', access_level: 'admin', path_pattern: '/x/**' },
        bot,
      );
      expectForbidden(grant, 'volume:admin', `POST mount ${vol}`);
      expectForbidden(
        await gw.call('DELETE', `${volPath(ids.ws1, vol)}/mounts/${own}`, undefined, bot),
        'volume:admin',
        `DELETE mount ${vol}`,
      );
    }
    const read = await gw.call('GET', volPath(ids.ws1, ids.read));
    expect(read.body.description).toBeNull();
    expect((await gw.call('GET', `${volPath(ids.ws1, ids.read)}/mounts`)).body.mounts).toHaveLength(2);
    expect((await gw.call('GET', volPath(ids.ws1, ids.write))).status).toBe(200);
  });

  it('unmounted volumes answer 404, not 403, to every write', async () => {
    const spyMount = (await gw.call('GET', `${volPath(ids.ws1, ids.unmounted)}/mounts`)).body.mounts[0].mount_id;
    for (const [method, route, body] of [
      ['PATCH', volPath(ids.ws1, ids.unmounted), { name: 'pwned' }],
      ['DELETE', volPath(ids.ws1, ids.unmounted)],
      ['POST', `${volPath(ids.ws1, ids.unmounted)}/mounts`, { app_id: 'bot', access_level: 'admin' }],
      ['DELETE', `${volPath(ids.ws1, ids.unmounted)}/mounts/${spyMount}`],
    ] as [string, string, unknown?][]) {
      expect((await gw.call(method, route, body, bot)).status, `${method} ${route}`).toBe(404);
    }
    expect((await gw.call('GET', `${volPath(ids.ws1, ids.unmounted)}/mounts`)).body.mounts).toHaveLength(1);
  });

  it('an admin mount allows PATCH, mount management and DELETE', async () => {
    const patched = await gw.call('PATCH', volPath(ids.ws1, ids.admin), { description: 'by bot', tags: ['app'] }, bot);
    expect(patched.status).toBe(200);
    expect(patched.body.volume).toMatchObject({ name: 'admin', description: 'by bot', tags: ['app'] });

    const granted = await gw.call('POST', `${volPath(ids.ws1, ids.admin)}/mounts`, { app_id: 'helper', access_level: 'read' }, bot);
    expect(granted.status).toBe(201);
    expect(granted.body.mount).toMatchObject({ app_id: 'helper', granted_by: `key:${botKeyId}` });
    const removed = await gw.call('DELETE', `${volPath(ids.ws1, ids.admin)}/mounts/${granted.body.mount.mount_id}`, undefined, bot);
    expect(removed.status).toBe(200);

    const doomed = await volume(ids.ws1, 'doomed');
    await mount(ids.ws1, doomed, 'bot', 'admin');
    expect((await gw.call('DELETE', volPath(ids.ws1, doomed), undefined, bot)).body).toEqual({ message: 'Volume deleted successfully' });
    expect((await gw.call('GET', volPath(ids.ws1, doomed))).status).toBe(404);
  });

  it('an admin mount on a sub-tree cannot widen its reach: volume and mount changes need /**', async () => {
    const vol = await volume(ids.ws1, 'subtree');
    await mount(ids.ws1, vol, 'bot', 'admin', 'acme', '/admin/**');
    await mount(ids.ws1, vol, 'spy', 'read');
    expectForbidden(
      await gw.call('POST', `${volPath(ids.ws1, vol)}/mounts`, { app_id: 'bot', access_level: 'admin' }, bot),
      'volume:admin',
      'widen',
    );
    expectForbidden(await gw.call('PATCH', volPath(ids.ws1, vol), { description: 'no' }, bot), 'volume:admin', 'PATCH');
    const seen = await gw.call('GET', `${volPath(ids.ws1, vol)}/mounts`, undefined, bot);
    expect(seen.body.mounts.map((m: { app_id: string }) => m.app_id)).toEqual(['bot']);
    // A whole-volume admin sees, and may manage, every app's mounts.
    await mount(ids.ws1, vol, 'bot', 'admin');
    const all = await gw.call('GET', `${volPath(ids.ws1, vol)}/mounts`, undefined, bot);
    expect(all.body.mounts.map((m: { app_id: string }) => m.app_id).sort()).toEqual(['bot', 'bot', 'spy']);
    const spy = all.body.mounts.find((m: { app_id: string }) => m.app_id === 'spy');
    expect((await gw.call('DELETE', `${volPath(ids.ws1, vol)}/mounts/${spy.mount_id}`, undefined, bot)).status).toBe(200);
  });

  it('an admin mount does not stand in for missing scopes', async () => {
    const readOnly = await createKey(gw, 'acme', ['volumes:read'], 'bot');
    expectForbidden(await gw.call('PATCH', volPath(ids.ws1, ids.admin), { description: 'no' }, readOnly), 'volumes:write', 'PATCH');
    expectForbidden(await gw.call('POST', `${volPath(ids.ws1, ids.admin)}/mounts`, { app_id: 'x' }, readOnly), 'volumes:write', 'mount');
    expectForbidden(await gw.call('GET', `/v1/orgs/acme/workspaces`, undefined, readOnly), 'workspaces:read', 'list');
    expect((await gw.call('GET', volPath(ids.ws1, ids.admin), undefined, readOnly)).status).toBe(200);
  });

  it('can never create, change or delete workspaces, nor create volumes', async () => {
    const before = (await gw.call('GET', '/v1/orgs/acme/workspaces')).body.total;
    expectForbidden(await gw.call('POST', '/v1/orgs/acme/workspaces', { name: 'by-bot' }, bot), 'workspaces:write', 'create ws');
    expectForbidden(await gw.call('PUT', wsPath(ids.ws1), { name: 'renamed' }, bot), 'workspaces:write', 'update ws');
    expectForbidden(await gw.call('DELETE', wsPath(ids.ws1), undefined, bot), 'workspaces:write', 'delete ws');
    for (const ws of [ids.ws1, ids.ws3]) {
      expectForbidden(await gw.call('POST', `${wsPath(ws)}/volumes`, { name: 'by-bot' }, bot), 'volumes:write', `create volume in ${ws}`);
    }
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces')).body.total).toBe(before);
    expect((await gw.call('GET', wsPath(ids.ws1))).body.name).toBe('mounted');
    expect(names((await gw.call('GET', `${wsPath(ids.ws1)}/volumes`)).body.volumes)).not.toContain('by-bot');
  });

  it('loses access when its mount is deleted, including by itself', async () => {
    const ws = await workspace('fleeting');
    const vol = await volume(ws, 'fleeting');
    const readMount = await mount(ws, vol, 'bot', 'read', 'acme', '/docs/**');
    const adminMount = await mount(ws, vol, 'bot', 'admin');
    expect((await gw.call('GET', volPath(ws, vol), undefined, bot)).status).toBe(200);
    expect((await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, bot)).body.total).toBe(2);

    // Dropping the admin mount leaves read access, no longer admin.
    expect((await gw.call('DELETE', `${volPath(ws, vol)}/mounts/${adminMount}`, undefined, bot)).status).toBe(200);
    expect((await gw.call('GET', volPath(ws, vol), undefined, bot)).status).toBe(200);
    expectForbidden(await gw.call('PATCH', volPath(ws, vol), { description: 'x' }, bot), 'volume:admin', 'PATCH after demotion');

    expect((await gw.call('DELETE', `${volPath(ws, vol)}/mounts/${readMount}`)).status).toBe(200);
    expect((await gw.call('GET', volPath(ws, vol), undefined, bot)).status).toBe(404);
    expect((await gw.call('GET', `${volPath(ws, vol)}/mounts`, undefined, bot)).status).toBe(404);
    expect((await gw.call('GET', wsPath(ws), undefined, bot)).status).toBe(404);
    const list = await gw.call('GET', '/v1/orgs/acme/workspaces', undefined, bot);
    expect(list.body.total).toBe(1);
    expect(list.body.workspaces.map((w: { workspace_id: string }) => w.workspace_id)).toEqual([ids.ws1]);
  });
});

describe('visibility filters cannot be widened by the route', () => {
  it("findVisibleVolume with another org's route finds nothing for an org key", async () => {
    const { authenticate } = await import('../src/domain/access/authenticate.js');
    const { findVisibleVolume } = await import('../src/domain/access/authorize.js');
    const gWs = await workspace('leak-check', 'globex');
    const gVol = await volume(gWs, 'secret', 'globex');
    const rt = gw.app.runtime;
    const acme = await authenticate(rt, await createKey(gw, 'acme', ['volumes:read']), undefined);
    await expect(findVisibleVolume(rt, acme, { orgId: 'globex', workspaceId: gWs, volumeId: gVol })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });
});
