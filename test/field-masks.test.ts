import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './helpers/app.js';

let gw: TestGateway;
let ws: string;
let vol: string;
const ORG = 'masks';
const wsUrl = () => `/v1/orgs/${ORG}/workspaces/${ws}`;
const volUrl = () => `${wsUrl()}/volumes/${vol}`;

beforeAll(async () => {
  gw = await startGateway();
  ws = (await gw.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'masked', tags: ['t'] })).body.workspace_id;
  vol = (await gw.call('POST', `${wsUrl()}/volumes`, { name: 'v1', tags: ['a'] })).body.volume.volume_id;
  await gw.call('POST', `${wsUrl()}/volumes`, { name: 'v2' });
  await gw.call('POST', `${volUrl()}/mounts`, { app_id: 'bot', access_level: 'write' });
});
afterAll(async () => {
  await gw?.stop();
});

describe('field masks', () => {
  it('a volume GET keeps only the named fields, in their usual order, and still answers its ETag', async () => {
    const res = await gw.call('GET', `${volUrl()}?fields=version,name,volume_id`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ volume_id: vol, name: 'v1', version: 1 });
    expect(Object.keys(res.body)).toEqual(['volume_id', 'name', 'version']);
    expect(res.headers.get('etag')).toBe('"1"');
    // Spaces, repeats and the repeated-parameter form are all one mask.
    expect((await gw.call('GET', `${volUrl()}?fields=%20name%20,,name`)).body).toEqual({ name: 'v1' });
    expect((await gw.call('GET', `${volUrl()}?fields=name&fields=tags`)).body).toEqual({ name: 'v1', tags: ['a'] });
    // Without a mask, everything.
    expect(Object.keys((await gw.call('GET', volUrl())).body).length).toBeGreaterThan(20);
  });

  it('lists mask each item and keep their envelope', async () => {
    const page = await gw.call('GET', `${wsUrl()}/volumes?fields=name,used_bytes&limit=1`);
    expect(page.status).toBe(200);
    expect(Object.keys(page.body)).toEqual(['total', 'has_more', 'next_cursor', 'volumes']);
    expect(page.body).toMatchObject({ total: 2, has_more: true, volumes: [{ name: 'v1', used_bytes: 0 }] });
    expect(Object.keys(page.body.volumes[0])).toEqual(['name', 'used_bytes']);
    const next = await gw.call('GET', `${wsUrl()}/volumes?fields=name&cursor=${page.body.next_cursor}`);
    expect(next.body.volumes).toEqual([{ name: 'v2' }]);

    const wss = await gw.call('GET', `/v1/orgs/${ORG}/workspaces?fields=workspace_id,bucket_status`);
    expect(wss.body).toMatchObject({ total: 1, has_more: false, next_cursor: null });
    expect(Object.keys(wss.body.workspaces[0])).toEqual(['workspace_id', 'bucket_status']);
    expect((await gw.call('GET', `${wsUrl()}?fields=name,tags`)).body).toEqual({ name: 'masked', tags: ['t'] });

    const mounts = await gw.call('GET', `${volUrl()}/mounts?fields=app_id,access_level`);
    expect(mounts.body).toEqual({ mounts: [{ app_id: 'bot', access_level: 'write' }] });
  });

  it('unknown fields are a 422 naming each of them; an empty mask too', async () => {
    for (const [route, bad] of [
      [`${volUrl()}?fields=name,size,creator`, ['size', 'creator']],
      [`${wsUrl()}/volumes?fields=volume_id,id`, ['id']],
      [`/v1/orgs/${ORG}/workspaces?fields=volume_id`, ['volume_id']],
      [`${wsUrl()}?fields=nope`, ['nope']],
      [`${volUrl()}/mounts?fields=path`, ['path']],
      [`/v1/orgs/${ORG}/volumes/shared?fields=shared`, ['shared']],
    ] as const) {
      const res = await gw.call('GET', route);
      expect(res.status, route).toBe(422);
      expect(
        res.body.detail.map((d: any) => d.ctx.field),
        route,
      ).toEqual(bad);
      for (const [i, d] of res.body.detail.entries()) {
        expect(Object.keys(d)).toEqual(['loc', 'msg', 'type', 'input', 'ctx']);
        expect(d).toMatchObject({ loc: ['query', 'fields'], type: 'field_unknown' });
        expect(d.msg).toContain(`'${bad[i]}'`);
        expect(d.ctx.allowed.length).toBeGreaterThan(3);
        expect(d.ctx.allowed).not.toContain(bad[i]);
      }
    }
    for (const q of ['fields=', 'fields=,,', 'fields=%20']) {
      const res = await gw.call('GET', `${volUrl()}?${q}`);
      expect(res.status, q).toBe(422);
      expect(res.body.detail[0].loc).toEqual(['query', 'fields']);
    }
    expect((await gw.call('GET', `${volUrl()}?fields=${'n'.repeat(2001)}`)).body.detail[0]).toMatchObject({
      loc: ['query', 'fields'],
      type: 'string_too_long',
    });
  });

  it('masks are checked before access, so a bad mask is 422 even for a missing volume; auth still comes first', async () => {
    const missing = `${wsUrl()}/volumes/01900000-0000-7000-8000-000000000000`;
    expect((await gw.call('GET', `${missing}?fields=bogus`)).status).toBe(422);
    expect((await gw.call('GET', `${missing}?fields=name`)).status).toBe(404);
    expect((await gw.call('GET', `${volUrl()}?fields=name`, undefined, null)).status).toBe(401);
  });
});
