import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway } from './helpers/app.js';

// Compiled reads (src/graphql/compiled/read.ts) answer nested reads by org keys with one statement
// that builds the JSON in Postgres. Every query here runs twice on the same data, compiled and through
// graphql-js resolvers (GRAPHQL_COMPILED_READS off at runtime), and the two answers must be equal,
// field by field, errors included. Queries the compiler does not know must fall back, unchanged.

const ORG = 'compiled';
const OTHER = 'compiled-other';
let gw: TestGateway;
let orgKey: string;
let noEntriesKey: string;
let appKey: string;
let bossKey: string;
let writerKey: string;
let workspaceId: string;
let emptyWorkspaceId: string;
let otherWorkspaceId: string;
const volumeIds: string[] = [];
let deletedVolumeId: string;

const route = (org: string, ws: string) => `/v1/orgs/${org}/workspaces/${ws}/volumes`;

beforeAll(async () => {
  gw = await startGateway();
  const ws = async (org: string, name: string, extra: object = {}) =>
    (await gw.call('POST', `/v1/orgs/${org}/workspaces`, { name, ...extra })).body.workspace_id as string;
  workspaceId = await ws(ORG, 'main', { description: 'the "main" one', tags: ['a', 'b'] });
  emptyWorkspaceId = await ws(ORG, 'empty');
  otherWorkspaceId = await ws(OTHER, 'theirs');
  const base = route(ORG, workspaceId);
  for (let i = 0; i < 4; i++) {
    const res = await gw.call('POST', base, {
      name: `v${i}`,
      indexing_mode: 'manual',
      tags: i % 2 ? ['odd'] : [],
      ...(i === 1 ? { max_size_bytes: 10_000_000, max_file_count: 500, description: 'quota\nand "quotes"' } : {}),
    });
    volumeIds.push(res.body.volume.volume_id);
  }
  const [v0, v1, v2] = volumeIds as [string, string, string];
  // Paths that exercise the cursor's JSON and base64url (quotes, unicode, a path long enough to wrap).
  const paths = [
    '/a.json',
    '/docs/b.md',
    '/docs/c "quoted".md',
    '/docs/ünïcødé 文字.txt',
    `/deep/${'x'.repeat(90)}/leaf.txt`,
    '/docs/sub/d.md',
    '/e.txt',
  ];
  for (const [i, p] of paths.entries()) {
    const body = p.endsWith('.json')
      ? { content: { n: i, nested: { list: [1, 2.5, 'three'], yes: true } }, tags: ['json'], metadata: { k: 'v', z: 1, a: [null] } }
      : { content_text: `text ${i} of ${p}`, tags: i % 2 ? ['t', 'odd'] : ['t'], ...(i === 6 ? { ttl_seconds: 3600 } : {}) };
    expect((await gw.call('PUT', `${base}/${v0}/entries${p}`, body)).status).toBeLessThan(300);
  }
  await gw.call('PUT', `${base}/${v1}/entries/only.txt`, { content_text: 'one' });
  // An expired entry and an expired lock: set in the past directly (waiting for a TTL would be a sleep).
  await gw.call('PUT', `${base}/${v1}/entries/gone.txt`, { content_text: 'expired', ttl_seconds: 60 });
  await gw.app.database.prisma.entry.updateMany({ where: { path: '/gone.txt' }, data: { expiresAt: new Date(Date.now() - 1000) } });
  for (const [app, pattern, level] of [
    ['reader', '/docs/**', 'read'],
    ['writer', '/**', 'write'],
  ] as const) {
    await gw.call('POST', `${base}/${v0}/mounts`, { app_id: app, path_pattern: pattern, access_level: level });
  }
  await gw.call('POST', `${base}/${v2}/mounts`, { app_id: 'reader', path_pattern: '/**', access_level: 'read' });
  // boss administers v2 whole (sees every mount there); v3 is shared (every key reads all of it).
  await gw.call('POST', `${base}/${v2}/mounts`, { app_id: 'boss', path_pattern: '/**', access_level: 'admin' });
  await gw.call('POST', `${base}/${v0}/mounts`, { app_id: 'boss', path_pattern: '/docs/*.md', access_level: 'write' });
  await gw.call('PUT', `${base}/${v2}/entries/docs/x.md`, { content_text: 'x' });
  await gw.call('PUT', `${base}/${v2}/entries/top.md`, { content_text: 'top' });
  await gw.call('PUT', `${base}/${volumeIds[3]}/entries/shared/s.md`, { content_text: 'shared' });
  expect((await gw.call('POST', `${base}/${volumeIds[3]}/make-shared`, {})).status).toBeLessThan(300);
  for (const partition of ['/docs/', 'jobs', 'zeta']) {
    const res = await gw.call('POST', `${base}/${v0}/locks`, { partition, app_id: 'writer', execution_id: 'run-1', ttl_seconds: 600 });
    expect(res.status).toBe(201);
  }
  await gw.call('POST', `${base}/${v1}/locks`, { partition: 'old', app_id: 'writer', ttl_seconds: 600 });
  await gw.app.database.prisma.lock.updateMany({ where: { partition: 'old' }, data: { expiresAt: new Date(Date.now() - 1000) } });
  await gw.call('POST', `${base}/${v1}/locks`, { partition: 'released', app_id: 'writer', ttl_seconds: 600 });
  await gw.call('DELETE', `${base}/${v1}/locks/released?app_id=writer`);
  deletedVolumeId = (await gw.call('POST', base, { name: 'doomed', indexing_mode: 'manual' })).body.volume.volume_id;
  await gw.call('PUT', `${base}/${deletedVolumeId}/entries/x.txt`, { content_text: 'x' });
  expect((await gw.call('DELETE', `${base}/${deletedVolumeId}`)).status).toBeLessThan(300);
  await gw.call('POST', route(OTHER, otherWorkspaceId), { name: 'theirs', indexing_mode: 'manual' });

  orgKey = await createKey(gw, ORG, ['workspaces:read', 'volumes:read', 'entries:read']);
  noEntriesKey = await createKey(gw, ORG, ['workspaces:read', 'volumes:read']);
  appKey = await createKey(gw, ORG, ['workspaces:read', 'volumes:read', 'entries:read'], 'reader');
  bossKey = await createKey(gw, ORG, ['workspaces:read', 'volumes:read', 'entries:read'], 'boss');
  writerKey = await createKey(gw, ORG, ['workspaces:read', 'volumes:read', 'entries:read'], 'writer');
}, 120_000);

afterAll(async () => {
  await gw?.stop();
});

const COMPILED = /^SELECT json_build_object\(/;

/** Error request ids differ per request by design. */
const withoutRequestIds = (body: { errors?: { extensions?: Record<string, unknown> }[] }) => ({
  ...body,
  ...(body.errors ? { errors: body.errors.map((e) => ({ ...e, extensions: { ...e.extensions, requestId: undefined } })) } : {}),
});

/** The answer compiled and through resolvers (must be equal), and whether the compiled statement answered. */
async function both(query: string, variables: Record<string, unknown>, key: string) {
  const settings = gw.app.runtime.settings;
  await gw.gql('{ __typename }', {}, key); // key looked up once
  gw.queries.length = 0;
  const compiled = await gw.gql(query, variables, key);
  const statements = [...gw.queries];
  settings.compiledReads = false;
  try {
    const resolved = await gw.gql(query, variables, key);
    expect(compiled.status).toBe(resolved.status);
    expect(withoutRequestIds(compiled.body)).toEqual(withoutRequestIds(resolved.body));
  } finally {
    settings.compiledReads = true;
  }
  // Compiled: its one statement and nothing after it (app keys read their mount patterns first).
  const last = statements.length - 1;
  const compiledAnswer = last >= 0 && last <= 1 && COMPILED.test(statements[last] ?? '');
  return { body: compiled.body, statements, compiled: compiledAnswer };
}

const VOLUME_FIELDS = `id workspaceId orgId environmentId name label volumeType mountPath description embeddingModelId
  extractionModelId indexingMode chunkingStrategy chunkSize chunkOverlap status tags reindexStatus reindexStartedAt
  reindexCompletedAt reindexProgress reindexError createdBy modifiedBy isShared version maxSizeBytes maxFileCount maxMounts
  usedBytes entryCount mountCount lastReconciledAt createdAt updatedAt deletedAt __typename`;
const ENTRY_FIELDS = `id volumeId path contentType mimeType sizeBytes schemaId sha256 version isIndexed indexedAt totalChunks
  indexError ttlSeconds expiresAt writtenByAppId writtenByExecutionId tags metadata createdAt updatedAt __typename`;
const PAGE_INFO = 'pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor }';

const EVERYTHING = `
fragment V on Volume { ${VOLUME_FIELDS} }
query Everything($ws: ID!, $n: Int) {
  __typename
  all: workspaces(first: 2) { __typename totalCount ${PAGE_INFO} edges { __typename cursor node { __typename id orgId name
    description ownerId subscriptionPlanId isActive tags region s3Bucket bucketStatus bucketError createdAt updatedAt
    volumes(first: $n) { totalCount ${PAGE_INFO} edges { cursor node { ...V
      entries(first: 3) { __typename totalCount ${PAGE_INFO} edges { __typename cursor node { ${ENTRY_FIELDS} } } }
      mounts(first: 5) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id volumeId appId pathPattern accessLevel grantedBy createdAt __typename } } }
      locks { id volumeId partition lockType holderAppId holderExecutionId fencingToken acquiredAt expiresAt __typename }
    } } } } } }
  one: volumes(workspaceId: $ws, first: 2) { totalCount edges { node { name ... on Volume { entryCount } } } pageInfo { hasNextPage } }
}`;

describe('compiled reads: the same answers as the resolvers', () => {
  it('every column of workspaces, volumes, entries, mounts and locks, with cursors, page info, totals, aliases and fragments', async () => {
    for (const n of [1, 3, 10]) {
      const r = await both(EVERYTHING, { ws: workspaceId, n }, orgKey);
      expect(r.body.errors).toBeUndefined();
      expect(r.compiled).toBe(true);
      const vols = r.body.data.all.edges.find((e: { node: { id: string } }) => e.node.id === workspaceId).node.volumes;
      expect(vols.edges).toHaveLength(Math.min(n, 4)); // the deleted volume is not listed
      expect(vols.pageInfo.hasNextPage).toBe(n < 4);
    }
  });

  it('app keys: the volumes their mounts or sharing open, the mounts they may see, the paths their patterns match', async () => {
    const seen: Record<string, string[]> = {};
    for (const [name, key] of [
      ['reader', appKey],
      ['boss', bossKey],
      ['writer', writerKey],
    ] as const) {
      const r = await both(EVERYTHING, { ws: workspaceId, n: 10 }, key);
      expect(r.body.errors).toBeUndefined();
      // Two statements: the app's pattern regexes, then the read.
      expect(r.statements.filter((s) => COMPILED.test(s))).toHaveLength(1);
      const ws = r.body.data.all.edges.find((e: { node: { id: string } }) => e.node.id === workspaceId).node;
      seen[name] = ws.volumes.edges.flatMap((e: { node: { name: string; entries: { edges: { node: { path: string } }[] } } }) =>
        e.node.entries.edges.map((x) => `${e.node.name}${x.node.path}`),
      );
    }
    // reader: /docs/** of v0, all of v2 (first 3 by path), and the shared v3.
    expect(seen.reader).toEqual(expect.arrayContaining(['v0/docs/b.md', 'v2/docs/x.md', 'v2/top.md', 'v3/shared/s.md']));
    expect(seen.reader?.some((p) => p.startsWith('v0/a.json') || p.startsWith('v1'))).toBe(false);
    // boss: /docs/*.md of v0 (not deeper), v2 whole.
    expect(seen.boss?.filter((p) => p.startsWith('v0'))).toEqual(['v0/docs/b.md', 'v0/docs/c "quoted".md']);
  });

  it('pages through entries with after, prefix, tags and kind, cursors included, until the end', async () => {
    const q = `query($id: ID!, $after: String, $prefix: String, $tags: [String!], $kind: EntryKind) {
      volume(id: $id) { name entries(first: 2, after: $after, prefix: $prefix, tags: $tags, contentType: $kind) {
        totalCount ${PAGE_INFO} edges { cursor node { path tags contentType sizeBytes } } } } }`;
    for (const filters of [{}, { prefix: '/docs' }, { prefix: '/docs/' }, { tags: ['t'] }, { tags: ['t', 'odd'] }, { kind: 'json' }]) {
      let after: string | null = null;
      const seen: string[] = [];
      for (let page = 0; page < 10; page++) {
        const r = await both(q, { id: volumeIds[0], after, ...filters }, page % 2 ? appKey : orgKey);
        expect(r.compiled).toBe(true);
        const conn = r.body.data.volume.entries;
        seen.push(...conn.edges.map((e: { node: { path: string } }) => e.node.path));
        if (!conn.pageInfo.hasNextPage) break;
        after = conn.pageInfo.endCursor;
      }
      expect(seen.length).toBeGreaterThan(0);
      expect(seen).toEqual([...seen].sort());
    }
  });

  it('single roots: a workspace, a volume, ids that name nothing visible (null)', async () => {
    const q = `query($w: ID!, $v: ID!) { workspace(id: $w) { id name volumes(first: 10) { totalCount edges { node { id } } } }
      volume(id: $v) { id name locks { partition } mounts(first: 1) { totalCount ${PAGE_INFO} edges { cursor node { appId } } } } }`;
    for (const [w, v] of [
      [workspaceId, volumeIds[0]],
      [emptyWorkspaceId, volumeIds[1]],
      [otherWorkspaceId, deletedVolumeId],
      ['00000000-0000-4000-8000-000000000000', '00000000-0000-4000-8000-000000000001'],
    ]) {
      const r = await both(q, { w, v }, orgKey);
      expect(r.compiled).toBe(true);
      expect(r.body.errors).toBeUndefined();
    }
    const r = await both(q, { w: otherWorkspaceId, v: deletedVolumeId }, orgKey);
    expect(r.body.data).toEqual({ workspace: null, volume: null });
  });

  it('connections asked only for totals or page info, over no rows (an empty workspace, volumes without mounts)', async () => {
    for (const q of [
      '{ workspaces(first: 5) { edges { node { volumes(first: 10) { totalCount edges { node { mounts(first: 5) { totalCount } entries(first: 1) { totalCount } } } } } } } }',
      '{ workspaces(first: 5) { edges { node { volumes(first: 10) { pageInfo { hasNextPage endCursor } edges { node { mounts(first: 5) { pageInfo { startCursor } } entries(first: 1) { pageInfo { hasNextPage endCursor } } locks { id } } } } } } } }',
    ]) {
      const r = await both(q, {}, orgKey);
      expect(r.compiled).toBe(true);
    }
    const r = await both(`{ volumes(workspaceId: "${emptyWorkspaceId}") { totalCount pageInfo { hasNextPage } } }`, {}, orgKey);
    expect(r.compiled).toBe(true);
    expect(r.body.data.volumes).toEqual({ totalCount: 0, pageInfo: { hasNextPage: false } });
  });

  it('the bench query (10 volumes x 20 entries, mounts, locks) is one statement', async () => {
    const q = `query($n: Int!) { workspaces(first: 1) { edges { node { id name
      volumes(first: $n) { edges { node { id name
        entries(first: 20) { edges { node { path sizeBytes version } } }
        mounts(first: 10) { edges { node { appId pathPattern accessLevel } } }
        locks { partition lockType holderAppId fencingToken expiresAt } } } } } } } }`;
    const r = await both(q, { n: 10 }, orgKey);
    expect(r.compiled).toBe(true);
    expect(r.statements).toHaveLength(1);
    // Only the columns asked for: no bodies, no metadata.
    expect(r.statements[0]).not.toMatch(/\bcontent\b|content_text|metadata/);
  });
});

describe('compiled reads: what they leave to the resolvers', () => {
  const fallback = async (query: string, variables: Record<string, unknown>, key: string) => {
    const r = await both(query, variables, key);
    expect(r.compiled).toBe(false);
    return r.body;
  };

  it('keys without a scope the query needs', async () => {
    const q =
      '{ workspaces(first: 5) { edges { node { name volumes(first: 5) { edges { node { name entries { edges { node { path } } } } } } } } } }';
    const denied = await fallback(q, {}, noEntriesKey);
    expect(denied.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('fields that are not plain columns, paging past a first page of a volume list, filters and sorts', async () => {
    for (const q of [
      '{ workspaces(first: 1) { edges { node { volumes(first: 1) { edges { node { owner { id } restorableUntil } } } } } } }',
      '{ workspaces(first: 1) { edges { node { volumes(first: 1, sort: "name:desc") { edges { node { name } } } } } } }',
      '{ workspaces(first: 1, search: "mai") { edges { node { name } } } }',
      '{ workspaces(first: 1) { edges { node { name @include(if: true) } } } }',
      `{ volume(id: "${'v'.repeat(12)}") { entries { edges { node { content contentText } } } } }`,
    ]) {
      await fallback(q, {}, orgKey);
    }
    const first = await both('{ workspaces(first: 1) { pageInfo { endCursor } } }', {}, orgKey);
    expect(first.compiled).toBe(true);
    const after = first.body.data.workspaces.pageInfo.endCursor;
    const second = await fallback(
      'query($a: String) { workspaces(first: 1, after: $a) { edges { node { name } } } }',
      { a: after },
      orgKey,
    );
    expect(second.errors).toBeUndefined();
  });

  it('refusals answer as the resolvers do: a page too large, a bad cursor, another org, a workspace not visible', async () => {
    const big = await fallback('{ workspaces(first: 500) { edges { node { name } } } }', {}, orgKey);
    expect(big.errors?.[0]?.extensions?.code).toBe('VALIDATION_FAILED');
    const cursor = await fallback(`{ volume(id: "${volumeIds[0]}") { entries(after: "nope") { totalCount } } }`, {}, orgKey);
    expect(cursor.errors?.[0]?.extensions?.code).toBe('VALIDATION_FAILED');
    const org = await fallback(`{ workspaces(orgId: "${OTHER}") { totalCount } }`, {}, orgKey);
    expect(org.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    // Decided by the statement itself: compiled, found not visible, answered by the resolvers.
    const r = await both(`{ volumes(workspaceId: "${otherWorkspaceId}") { totalCount } }`, {}, orgKey);
    expect(r.statements[0]).toMatch(COMPILED);
    expect(r.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    // An app key sees a workspace only through a volume it reaches: the empty one is not found.
    const app = await both(`{ volumes(workspaceId: "${emptyWorkspaceId}") { totalCount } }`, {}, appKey);
    expect(app.statements.some((s) => COMPILED.test(s))).toBe(true);
    expect(app.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });

  it('queries over the complexity limit are refused as before (QUERY_TOO_COMPLEX)', async () => {
    const q = `{ workspaces(first: 200) { edges { node { volumes(first: 200) { edges { node {
      entries(first: 200) { edges { node { path } } } } } } } } } }`;
    const body = await fallback(q, {}, orgKey);
    expect(body.errors?.[0]?.extensions?.code).toBe('QUERY_TOO_COMPLEX');
  });
});
