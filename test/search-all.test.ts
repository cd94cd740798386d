import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

// search-all covers exactly the volumes an app has read mounts on, only the paths those mounts
// match, and never another organisation's content. GraphQL search resolves hits' entries in one query.

let gw: TestGateway;
const TEXT = 'quarterly harvest report for the orchard cooperative';

beforeAll(async () => {
  // Every volume through the shared indexes, whatever its size (search-sizing.test.ts covers the
  // exact scans of small volumes): the statement counts below then do not depend on whether a
  // volume's size was counted within the last few seconds.
  gw = await startGateway({ JOB_POLL_MS: '50', SEARCH_EXACT_BELOW_CHUNKS: '0', SEARCH_BM25_EXACT_BELOW_CHUNKS: '0' });
});
afterAll(() => gw?.stop());

async function fill(v: TestVolume, paths: string[]) {
  for (const p of paths) expect((await gw.call('PUT', v.entry(p), { content_text: `${TEXT} (${p})` })).status).toBe(201);
  await indexed(gw, v.volumeId, paths.length);
}

async function mount(v: TestVolume, app: string, pattern: string, level = 'read') {
  const res = await gw.call('POST', v.mounts, { app_id: app, path_pattern: pattern, access_level: level });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
}

describe('search-all', () => {
  let a1: TestVolume;
  let a2: TestVolume;
  let a3: TestVolume;
  let other: TestVolume;
  let base: string;
  beforeAll(async () => {
    a1 = await newVolume(gw, 'org-sa');
    // Two more volumes in the same workspace.
    const vols = `/v1/orgs/org-sa/workspaces/${a1.workspaceId}/volumes`;
    const mk = async (name: string): Promise<TestVolume> => {
      const res = await gw.call('POST', vols, { name });
      const volumeId = res.body.volume.volume_id;
      return {
        ...a1,
        volumeId,
        volumeUrl: `${vols}/${volumeId}`,
        entry: (p: string) => `${vols}/${volumeId}/entries${p}`,
        mounts: `${vols}/${volumeId}/mounts`,
      };
    };
    a2 = await mk('second');
    a3 = await mk('third');
    other = await newVolume(gw, 'org-other');
    await fill(a1, ['/public/a.md', '/private/a.md']);
    await fill(a2, ['/b.md']);
    await fill(a3, ['/c.md']);
    await fill(other, ['/public/x.md']);
    await mount(a1, 'app-one', '/public/**');
    await mount(a2, 'app-one', '/**', 'write');
    await mount(a3, 'app-two', '/**');
    await mount(other, 'app-one', '/**');
    base = `/v1/orgs/org-sa/workspaces/${a1.workspaceId}/volumes/search-all`;
  });

  const paths = (body: any) => body.results.map((r: any) => `${r.volume_name}:${r.path}`).sort();

  it("an app key finds only its mounted volumes and the paths its mounts match, never another org's", async () => {
    const key = await createKey(gw, 'org-sa', ['search', 'entries:read', 'volumes:read'], 'app-one');
    const res = await gw.call('POST', `${base}?app_id=app-one`, { query: 'orchard harvest', top_k: 50 }, key);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(paths(res.body)).toHaveLength(2);
    expect(paths(res.body)).toEqual(expect.arrayContaining([expect.stringMatching(/^vol-.*:\/public\/a\.md$/), 'second:/b.md']));
    expect(res.body.results.every((r: any) => [a1.volumeId, a2.volumeId].includes(r.volume_id))).toBe(true);
    // Without app_id an app key searches as itself.
    const implicit = await gw.call('POST', base, { query: 'orchard harvest', top_k: 50 }, key);
    expect(paths(implicit.body)).toEqual(paths(res.body));
    // Naming another app is refused.
    const spoof = await gw.call('POST', `${base}?app_id=app-two`, { query: 'orchard' }, key);
    expect(spoof.status).toBe(403);
  });

  it('an org key naming an app sees exactly what that app would; without app_id every volume of the workspace', async () => {
    const key = await createKey(gw, 'org-sa', ['search', 'entries:read', 'volumes:read']);
    const asTwo = await gw.call('POST', `${base}?app_id=app-two`, { query: 'orchard harvest', top_k: 50 }, key);
    expect(paths(asTwo.body)).toEqual(['third:/c.md']);
    const nobody = await gw.call('POST', `${base}?app_id=app-none`, { query: 'orchard harvest', top_k: 50 }, key);
    expect(nobody.body).toEqual({ results: [], query: 'orchard harvest', total: 0 });
    const all = await gw.call('POST', base, { query: 'orchard harvest', top_k: 50 }, key);
    expect(all.body.total).toBe(4);
    expect(all.body.results.some((r: any) => r.volume_id === other.volumeId)).toBe(false);
  });

  it("naming app_id gives exactly that app's view to every caller, over REST and GraphQL", async () => {
    // app-one: a1 under /public/** only, a2 whole (write); app-two: a3 whole. `other` is another org.
    const a1Name = (await gw.call('GET', a1.volumeUrl)).body.name;
    const app1 = ['second:/b.md', `${a1Name}:/public/a.md`].sort();
    const app2 = ['third:/c.md'];
    const keys = {
      platform: undefined as string | undefined,
      orgAdmin: await createKey(gw, 'org-sa', ['admin']),
      orgSearch: await createKey(gw, 'org-sa', ['search', 'entries:read']),
      appOne: await createKey(gw, 'org-sa', ['search', 'entries:read'], 'app-one'),
      appTwo: await createKey(gw, 'org-sa', ['search', 'entries:read'], 'app-two'),
    };
    const gqlPaths = (data: any) => data.searchAll.hits.map((h: any) => `${h.volumeName}:${h.path}`).sort();
    const query = `query($ws: ID!, $app: String) { searchAll(workspaceId: $ws, appId: $app, query: "orchard harvest", topK: 50) { hits { volumeName path } } }`;
    const cases: [keyof typeof keys, string, string[] | number][] = [
      ['platform', 'app-one', app1],
      ['platform', 'app-two', app2],
      ['platform', 'app-none', []],
      ['orgAdmin', 'app-one', app1],
      ['orgAdmin', 'app-two', app2],
      ['orgSearch', 'app-one', app1],
      ['orgSearch', 'app-two', app2],
      ['appOne', 'app-one', app1],
      ['appOne', 'app-two', 403],
      ['appTwo', 'app-two', app2],
      ['appTwo', 'app-one', 403],
    ];
    for (const [who, app, want] of cases) {
      const key = keys[who];
      const rest = await gw.call('POST', `${base}?app_id=${app}`, { query: 'orchard harvest', top_k: 50 }, key ?? undefined);
      const gql = await gw.gql(query, { ws: a1.workspaceId, app }, key ?? undefined);
      if (typeof want === 'number') {
        expect(rest.status, `${who} as ${app}`).toBe(want);
        expect(gql.body.errors?.[0]?.extensions?.code, `${who} as ${app}`).toBe('FORBIDDEN');
        continue;
      }
      expect(rest.status, `${who} as ${app}: ${JSON.stringify(rest.body)}`).toBe(200);
      expect(paths(rest.body), `REST ${who} as ${app}`).toEqual(want);
      expect(gql.body.errors, `GraphQL ${who} as ${app}`).toBeUndefined();
      expect(gqlPaths(gql.body.data), `GraphQL ${who} as ${app}`).toEqual(want);
    }
    // `search` alone is not enough to read entries through search.
    const weak = await createKey(gw, 'org-sa', ['search']);
    expect((await gw.call('POST', `${base}?app_id=app-one`, { query: 'orchard' }, weak)).status).toBe(403);
  });

  it("another org's key cannot reach the workspace (404) and its own search-all never returns this org's content", async () => {
    const foreign = await createKey(gw, 'org-other', ['search', 'entries:read', 'volumes:read'], 'app-one');
    expect((await gw.call('POST', base, { query: 'orchard' }, foreign)).status).toBe(404);
    const own = await gw.call(
      'POST',
      `/v1/orgs/org-other/workspaces/${other.workspaceId}/volumes/search-all`,
      { query: 'orchard harvest', top_k: 50 },
      foreign,
    );
    expect(own.status).toBe(200);
    expect(own.body.results.map((r: any) => r.volume_id)).toEqual([other.volumeId]);
  });

  it('volume search by an app key filters paths its mounts do not match', async () => {
    const key = await createKey(gw, 'org-sa', ['search', 'entries:read'], 'app-one');
    const res = await gw.call('POST', `${a1.volumeUrl}/search`, { query: 'orchard harvest', top_k: 50 }, key);
    expect(res.body.results.map((r: any) => r.path)).toEqual(['/public/a.md']);
    const unmounted = await gw.call('POST', `${a3.volumeUrl}/search`, { query: 'orchard' }, key);
    expect(unmounted.status).toBe(404);
  });

  it('validates app_id and the body like the volume search', async () => {
    expect((await gw.call('POST', `${base}?app_id=${'x'.repeat(300)}`, { query: 'a' })).status).toBe(422);
    const res = await gw.call('POST', base, { query: 'a', top_k: 500 });
    expect(res.status).toBe(422);
    expect(res.body.detail[0].loc).toEqual(['body', 'top_k']);
  });
});

describe('GraphQL search', () => {
  it('returns SearchHit with its entry, loaded in one query however many hits', async () => {
    const v = await newVolume(gw, 'org-gql');
    const paths = Array.from({ length: 12 }, (_, i) => `/n/${i}.md`);
    await fill(v, paths);
    const query = `query($id: ID!, $k: Int) { search(volumeId: $id, query: "orchard harvest", topK: $k, mode: hybrid) {
      total hits { path score chunkIndex volumeName entry { id path version isIndexed volume { id name } } } } }`;
    const counts: number[] = [];
    for (const k of [2, 12]) {
      gw.queries.length = 0;
      const res = await gw.gql(query, { id: v.volumeId, k });
      expect(res.body.errors).toBeUndefined();
      const hits = res.body.data.search.hits;
      expect(hits).toHaveLength(k);
      for (const h of hits) expect(h.entry).toMatchObject({ path: h.path, isIndexed: true, volume: { id: v.volumeId } });
      counts.push(gw.queries.length);
    }
    expect(counts[1], `SQL statements for 2 vs 12 hits: ${counts}`).toBe(counts[0]);
    expect(counts[0]).toBeGreaterThan(0);
  });

  it('searchAll, filters and bad input over GraphQL', async () => {
    const v = await newVolume(gw, 'org-gql2');
    await fill(v, ['/keep/a.md', '/skip/b.md']);
    const res = await gw.gql(
      `query($ws: ID!) { searchAll(workspaceId: $ws, query: "orchard", filters: { pathPrefix: "/keep/" }) { total hits { path } } }`,
      { ws: v.workspaceId },
    );
    expect(res.body.data.searchAll).toEqual({ total: 1, hits: [{ path: '/keep/a.md' }] });
    const bad = await gw.gql(`query($id: ID!) { search(volumeId: $id, query: "x", topK: 0) { total } }`, { id: v.volumeId });
    expect(bad.body.errors[0].extensions.code).toBe('VALIDATION_FAILED');
  });
});

describe('search-all statements', () => {
  it('costs the same statements for 1 and 8 mounted volumes: their mounts come in one query, the search is one statement', async () => {
    const org = 'org-sa-count';
    const ws = (await gw.call('POST', `/v1/orgs/${org}/workspaces`, { name: 'counted' })).body.workspace_id as string;
    const vols = `/v1/orgs/${org}/workspaces/${ws}/volumes`;
    const key = await createKey(gw, org, ['search', 'entries:read'], 'app-count');
    const counts: number[] = [];
    let made = 0;
    for (const n of [1, 8]) {
      for (; made < n; made++) {
        const v = await gw.call('POST', vols, { name: `v${made}` });
        expect(v.status).toBe(201);
        const m = await gw.call('POST', `${vols}/${v.body.volume.volume_id}/mounts`, {
          app_id: 'app-count',
          path_pattern: '/docs/**',
          access_level: 'read',
        });
        expect(m.status).toBe(201);
      }
      await gw.call('POST', `${vols}/search-all`, { query: 'anything', mode: 'keyword' }, key); // key and org known
      gw.queries.length = 0;
      const res = await gw.call('POST', `${vols}/search-all`, { query: 'anything', mode: 'keyword' }, key);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      counts.push(gw.queries.length);
    }
    expect(counts[1]).toBe(counts[0]);
  });
});
