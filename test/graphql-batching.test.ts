import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';

// Nested reads cost a constant number of SQL statements, whatever the number of parents: relations
// and Volume.locks through the Pothos Prisma plugin (one statement with relationJoins), and
// Volume.entries / Entry bodies through per-request batch loaders. Listings never read entry bodies unless the query asks for them.

const ORG = 'batching';
let gw: TestGateway;
let workspaceId: string;
let appKey: string;
const volumeIds: string[] = [];

beforeAll(async () => {
  gw = await startGateway();
  workspaceId = (await gw.call('POST', `/v1/orgs/${ORG}/workspaces`, { name: 'w' })).body.workspace_id;
  const base = `/v1/orgs/${ORG}/workspaces/${workspaceId}/volumes`;
  for (let i = 0; i < 50; i++) {
    const id = (await gw.call('POST', base, { name: `v${String(i).padStart(2, '0')}`, indexing_mode: 'manual' })).body.volume.volume_id;
    volumeIds.push(id);
    await gw.call('POST', `${base}/${id}/mounts`, { app_id: 'reader', path_pattern: '/docs/**', access_level: 'write' });
    for (const path of ['/docs/a.md', '/docs/b.md', '/private/c.md']) {
      await gw.call('PUT', `${base}/${id}/entries${path}`, { content_text: `${path} of v${i}` });
    }
    await gw.call('POST', `${base}/${id}/locks`, { partition: 'jobs', app_id: 'reader', ttl_seconds: 600 });
  }
  appKey = await createKey(gw, ORG, ['workspaces:read', 'volumes:read', 'entries:read'], 'reader');
}, 120_000);
afterAll(async () => {
  await gw?.stop();
});

const NESTED = `query($n: Int!) { workspaces(orgId: "${ORG}", first: 1) { edges { node { name
  volumes(first: $n) { edges { node { name
    entries(first: 20) { edges { node { path sizeBytes version } } }
    mounts(first: 10) { edges { node { appId pathPattern accessLevel } } }
    locks { partition lockType holderAppId fencingToken } } } } } } } }`;

async function statementsFor(query: string, variables: Record<string, unknown>, key?: string) {
  await gw.gql('{ __typename }', {}, key); // warm up (org known, key looked up)
  gw.queries.length = 0;
  const res = await gw.gql(query, variables, key);
  expect(res.body.errors).toBeUndefined();
  return { sql: [...gw.queries], data: res.body.data };
}

describe('nested reads', () => {
  it('workspaces → volumes → entries, mounts, locks: the same statements for 2, 10 and 50 volumes (2: the relation tree with mounts and locks, then entries)', async () => {
    const counts: number[] = [];
    for (const n of [2, 10, 50]) {
      const { sql, data } = await statementsFor(NESTED, { n });
      const volumes = data.workspaces.edges[0].node.volumes.edges;
      expect(volumes).toHaveLength(n);
      for (const { node } of volumes) {
        expect(node.entries.edges.map((e: { node: { path: string } }) => e.node.path)).toEqual([
          '/docs/a.md',
          '/docs/b.md',
          '/private/c.md',
        ]);
        expect(node.mounts.edges).toHaveLength(1);
        expect(node.locks).toEqual([{ partition: 'jobs', lockType: 'exclusive', holderAppId: 'reader', fencingToken: 1 }]);
      }
      counts.push(sql.length);
    }
    expect(new Set(counts).size).toBe(1);
    expect(counts[0]).toBe(2);
  });

  it('totalCount costs one more statement only when selected', async () => {
    const withTotal = NESTED.replace('entries(first: 20) {', 'entries(first: 20) { totalCount');
    const plain = await statementsFor(NESTED, { n: 10 });
    const counted = await statementsFor(withTotal, { n: 10 });
    expect(counted.sql.length).toBe(plain.sql.length + 1);
    for (const { node } of counted.data.workspaces.edges[0].node.volumes.edges) expect(node.entries.totalCount).toBe(3);
    expect(plain.sql.some((s) => /count\(/i.test(s) && /entries/.test(s))).toBe(false);
  });

  it("an app key sees only its mounts' paths, at the same constant cost", async () => {
    const counts: number[] = [];
    for (const n of [2, 10, 50]) {
      const { sql, data } = await statementsFor(NESTED, { n }, appKey);
      for (const { node } of data.workspaces.edges[0].node.volumes.edges) {
        expect(node.entries.edges.map((e: { node: { path: string } }) => e.node.path)).toEqual(['/docs/a.md', '/docs/b.md']);
      }
      counts.push(sql.length);
    }
    expect(new Set(counts).size).toBe(1);
  });

  it('one volume reached twice in one request gets its own page each time (no doubled rows)', async () => {
    const page = '{ edges { node { path } } pageInfo { hasNextPage } }';
    const q = `query($id: ID!) { a: volume(id: $id) { entries(first: 5) ${page} locks { partition } }
      b: volume(id: $id) { entries(first: 5) ${page} locks { partition } } }`;
    const res = await gw.gql(q, { id: volumeIds[2] });
    expect(res.body.errors).toBeUndefined();
    for (const alias of ['a', 'b']) {
      const v = res.body.data[alias];
      expect(v.entries.edges.map((e: { node: { path: string } }) => e.node.path)).toEqual(['/docs/a.md', '/docs/b.md', '/private/c.md']);
      expect(v.entries.pageInfo.hasNextPage).toBe(false);
      expect(v.locks).toEqual([{ partition: 'jobs' }]);
    }
  });

  it('a page of entries pages on per volume', async () => {
    const q = `query($id: ID!, $after: String) { volume(id: $id) { entries(first: 2, after: $after) { edges { node { path } } pageInfo { hasNextPage endCursor } } } }`;
    const first = await gw.gql(q, { id: volumeIds[0] });
    expect(first.body.data.volume.entries.pageInfo.hasNextPage).toBe(true);
    const second = await gw.gql(q, { id: volumeIds[0], after: first.body.data.volume.entries.pageInfo.endCursor });
    expect(second.body.data.volume.entries.edges.map((e: { node: { path: string } }) => e.node.path)).toEqual(['/private/c.md']);
    expect(second.body.data.volume.entries.pageInfo.hasNextPage).toBe(false);
  });
});

describe('listings and entry bodies', () => {
  it('a listing reads no body; asking for bodies adds one batched statement', async () => {
    const base = `/v1/orgs/${ORG}/workspaces/${workspaceId}/volumes/${volumeIds[1]}`;
    await gw.call('PUT', `${base}/entries/docs/big.json`, { content: { blob: 'x'.repeat(100_000) } });
    const list = `query($id: ID!) { volume(id: $id) { entries(first: 20) { edges { node { path sizeBytes } } }
      directory(path: "/docs") { entries { path } } } }`;
    const { sql } = await statementsFor(list, { id: volumeIds[1] });
    const entrySql = sql.filter((s) => /\bentries\b/.test(s));
    expect(entrySql.length).toBeGreaterThan(0);
    for (const s of entrySql) expect(s).not.toMatch(/"content"|content_text|contentText/);

    const withBodies = `query($id: ID!) { volume(id: $id) { entries(first: 20) { edges { node { path content contentText } } } } }`;
    const plain = await statementsFor(withBodies.replace(' content contentText', ''), { id: volumeIds[1] });
    const bodies = await statementsFor(withBodies, { id: volumeIds[1] });
    expect(bodies.sql.length).toBe(plain.sql.length + 1);
    const nodes = bodies.data.volume.entries.edges.map((e: { node: unknown }) => e.node);
    expect(nodes).toContainEqual({ path: '/docs/a.md', content: null, contentText: '/docs/a.md of v1' });
    expect(nodes).toContainEqual({ path: '/docs/big.json', content: { blob: 'x'.repeat(100_000) }, contentText: null });
  });

  it('a listing reads only the columns its fields need (through fragments too), and every field still resolves', async () => {
    const listingSql = (sql: string[]) => {
      const found = sql.filter((s) => /CROSS JOIN LATERAL/.test(s) && /\bentries\b/.test(s));
      expect(found).toHaveLength(1);
      return found[0] as string;
    };
    const narrow = `query($id: ID!) { volume(id: $id) { entries(first: 20) { edges { cursor ...E } } } }
      fragment E on VolumeEntriesConnectionEdge { node { path ... on Entry { sizeBytes } } }`;
    const { sql, data } = await statementsFor(narrow, { id: volumeIds[1] });
    const listed = listingSql(sql);
    expect(listed).toMatch(/size_bytes AS "sizeBytes"/);
    for (const column of ['metadata', 'tags', 'sha256', 'created_at', 'updated_at', 'blob_key', 'content_type']) {
      expect(listed).not.toMatch(new RegExp(`\\be\\.${column}\\b`));
    }
    expect(data.volume.entries.edges[0]).toEqual({ cursor: expect.any(String), node: { path: '/docs/a.md', sizeBytes: 16 } });

    // Every field of Entry, in one listing: the rows carry what each needs.
    const wide = `query($id: ID!) { volume(id: $id) { entries(first: 20) { edges { node { id volumeId path contentType content
      contentText mimeType sizeBytes schemaId sha256 version isIndexed indexedAt totalChunks indexError ttlSeconds expiresAt
      writtenByAppId writtenByExecutionId tags metadata createdAt updatedAt downloadUrl volume { id name } } } } } }`;
    const all = await statementsFor(wide, { id: volumeIds[1] });
    const node = all.data.volume.entries.edges.find((e: { node: { path: string } }) => e.node.path === '/docs/a.md').node;
    expect(node).toMatchObject({
      volumeId: volumeIds[1],
      contentType: 'text',
      contentText: '/docs/a.md of v1',
      sizeBytes: 16,
      version: 1,
      tags: [],
      metadata: {},
      downloadUrl: null,
      volume: { id: volumeIds[1], name: 'v01' },
    });
    expect(node.createdAt).toEqual(expect.any(String));
    expect(listingSql(all.sql)).not.toMatch(/"content"|content_text/);
  });
});
