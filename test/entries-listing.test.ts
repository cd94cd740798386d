import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './helpers/app.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';

let gw: TestGateway;
let v: TestVolume;
const TREE = [
  '/readme.md',
  '/notes/a.md',
  '/notes/b.md',
  '/notes/2024/plan.md',
  '/notes/2024/q1/x.md',
  '/docs/guide.md',
  '/notes-old/z.md',
];

beforeAll(async () => {
  gw = await startGateway();
  v = await newVolume(gw, 'acme');
  for (const path of TREE) await putText(gw, v, path);
});
afterAll(async () => {
  await gw?.stop();
});

const paths = (list: { path: string }[]) => list.map((e) => e.path);
const locs = (body: any): string[] => (body.detail ?? []).map((d: { loc: unknown[] }) => d.loc.join('.'));

async function list(volume: TestVolume, path?: string, extra = '') {
  const res = await gw.call('GET', volume.list(path, extra));
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as { path: string; directories: string[]; entries: any[]; has_more: boolean; next_cursor: string | null };
}

describe('REST directory listing', () => {
  it('lists the root: sub-directories as full paths ending in / and the entries directly in it', async () => {
    for (const path of [undefined, '', '/']) {
      const body = await list(v, path);
      expect(Object.keys(body)).toEqual(['path', 'directories', 'entries', 'has_more', 'next_cursor']);
      expect(body).toMatchObject({ path: '/', directories: ['/docs/', '/notes-old/', '/notes/'], has_more: false, next_cursor: null });
      expect(paths(body.entries)).toEqual(['/readme.md']);
      expect(body.entries[0]).toMatchObject({ content_text: 'text of /readme.md', version: 1 });
    }
  });

  it('lists /notes, notes and /notes/ alike, without the sibling /notes-old', async () => {
    for (const path of ['/notes', 'notes', '/notes/']) {
      const body = await list(v, path);
      expect(body.path).toBe('/notes/');
      expect(body.directories).toEqual(['/notes/2024/']);
      expect(paths(body.entries)).toEqual(['/notes/a.md', '/notes/b.md']);
    }
  });

  it('lists deeper levels and answers an empty listing for a directory with nothing in it', async () => {
    const y2024 = await list(v, '/notes/2024');
    expect(y2024).toMatchObject({ path: '/notes/2024/', directories: ['/notes/2024/q1/'] });
    expect(paths(y2024.entries)).toEqual(['/notes/2024/plan.md']);
    const q1 = await list(v, '/notes/2024/q1/');
    expect(q1.directories).toEqual([]);
    expect(paths(q1.entries)).toEqual(['/notes/2024/q1/x.md']);
    // An entry's own path is not a directory.
    expect(await list(v, '/readme.md')).toMatchObject({ directories: [], entries: [] });
    expect(await list(v, '/nowhere')).toMatchObject({ path: '/nowhere/', directories: [], entries: [] });
  });

  it('refuses bad list paths with 422 naming query.path', async () => {
    for (const path of ['/a/../b', '/a//b', '/a/./b', '/a/\u0001']) {
      const res = await gw.call('GET', v.list(path));
      expect(res.status, path).toBe(422);
      expect(locs(res.body)).toEqual(['query.path']);
    }
  });
});

describe('REST listing pages', () => {
  let big: TestVolume;
  const names = Array.from({ length: 120 }, (_, i) => `/many/e${String(i).padStart(3, '0')}`);
  beforeAll(async () => {
    big = await newVolume(gw, 'acme');
    await Promise.all(names.map((p) => putText(gw, big, p, 'x')));
    await putText(gw, big, '/many/sub/deeper');
  });

  it('pages 120 entries with limit/cursor: no duplicates, no gaps, directories on every page', async () => {
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const body = await list(big, '/many/', `&limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(body.directories).toEqual(['/many/sub/']);
      sizes.push(body.entries.length);
      seen.push(...paths(body.entries));
      expect(body.has_more).toBe(body.next_cursor !== null);
      if (!body.has_more) break;
      cursor = body.next_cursor;
    }
    expect(sizes).toEqual([50, 50, 20]);
    expect(seen).toEqual(names);
  });

  it('uses the default limit of 50 and an exact last page', async () => {
    const first = await list(big, '/many/');
    expect(first.entries).toHaveLength(50);
    expect(first.has_more).toBe(true);
    const exact = await list(big, '/many/', '&limit=120');
    expect(exact.entries).toHaveLength(120);
    expect(exact).toMatchObject({ has_more: false, next_cursor: null });
  });

  it('refuses bad limits and cursors with 422', async () => {
    for (const [extra, loc] of [
      ['&limit=0', 'query.limit'],
      ['&limit=201', 'query.limit'],
      ['&limit=abc', 'query.limit'],
      ['&limit=1.5', 'query.limit'],
      ['&cursor=garbage', 'query.cursor'],
      [`&cursor=${Buffer.from('{"v":1,"p":"nope"}').toString('base64url')}`, 'query.cursor'],
    ]) {
      const res = await gw.call('GET', big.list('/many/', extra));
      expect(res.status, extra).toBe(422);
      expect(locs(res.body), extra).toEqual([loc]);
    }
  });
});

describe('LIKE wildcards in paths', () => {
  let w: TestVolume;
  beforeAll(async () => {
    w = await newVolume(gw, 'acme');
    for (const path of ['/a_b/x', '/a%b/y', '/axb/z', '/a\\b/w']) await putText(gw, w, path);
  });

  it('lists each directory literally', async () => {
    expect((await list(w, '/')).directories).toEqual(['/a%b/', '/a\\b/', '/a_b/', '/axb/']);
    expect(paths((await list(w, '/axb/')).entries)).toEqual(['/axb/z']);
    expect(paths((await list(w, '/a_b/')).entries)).toEqual(['/a_b/x']);
    expect(paths((await list(w, '/a%b/')).entries)).toEqual(['/a%b/y']);
    expect(paths((await list(w, '/a\\b/')).entries)).toEqual(['/a\\b/w']);
  });

  it('filters GraphQL entries by prefix literally', async () => {
    const q = 'query($id: ID!, $p: String) { volume(id: $id) { entries(prefix: $p) { totalCount edges { node { path } } } } }';
    for (const [prefix, expected] of [
      ['/axb', ['/axb/z']],
      ['/a_b/', ['/a_b/x']],
      ['/a%b', ['/a%b/y']],
    ] as const) {
      const res = await gw.gql(q, { id: w.volumeId, p: prefix });
      expect(res.body.errors, prefix).toBeUndefined();
      const conn = res.body.data.volume.entries;
      expect(
        conn.edges.map((e: any) => e.node.path),
        prefix,
      ).toEqual(expected);
      expect(conn.totalCount).toBe(expected.length);
    }
  });
});

describe('GraphQL listing', () => {
  const ENTRIES = `query($id: ID!, $prefix: String, $tags: [String!], $kind: EntryKind, $first: Int, $after: String) {
    volume(id: $id) { entries(prefix: $prefix, tags: $tags, contentType: $kind, first: $first, after: $after) {
      totalCount edges { node { path } } pageInfo { hasNextPage endCursor } } } }`;
  let g: TestVolume;
  beforeAll(async () => {
    g = await newVolume(gw, 'acme');
    for (let i = 0; i < 7; i++) {
      const res = await gw.call(
        'PUT',
        g.entry(`/g/${i}`),
        i % 2 ? { content: { i }, tags: ['odd', 'n'] } : { content_text: `${i}`, tags: ['n'] },
      );
      expect(res.status).toBe(201);
    }
    await putText(gw, g, '/other/o');
  });
  const entries = async (vars: Record<string, unknown>) => {
    const res = await gw.gql(ENTRIES, { id: g.volumeId, ...vars });
    expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
    return res.body.data.volume.entries;
  };

  it('filters the whole tree by prefix, tags (all of them) and kind, with exact totals', async () => {
    const all = await entries({});
    expect(all.totalCount).toBe(8);
    expect(all.edges.map((e: any) => e.node.path)).toEqual(['/g/0', '/g/1', '/g/2', '/g/3', '/g/4', '/g/5', '/g/6', '/other/o']);
    expect((await entries({ prefix: '/g' })).totalCount).toBe(7);
    const odd = await entries({ tags: ['odd', 'n'] });
    expect(odd.edges.map((e: any) => e.node.path)).toEqual(['/g/1', '/g/3', '/g/5']);
    expect((await entries({ tags: ['odd', 'missing'] })).totalCount).toBe(0);
    expect((await entries({ kind: 'text', prefix: '/g/' })).totalCount).toBe(4);
    expect((await entries({ kind: 'json' })).edges.map((e: any) => e.node.path)).toEqual(['/g/1', '/g/3', '/g/5']);
  });

  it('pages with first/after, keeping the total on every page', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    do {
      const page: any = await entries({ prefix: '/g', first: 3, after });
      expect(page.totalCount).toBe(7);
      seen.push(...page.edges.map((e: any) => e.node.path));
      after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
      pages++;
    } while (after && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(['/g/0', '/g/1', '/g/2', '/g/3', '/g/4', '/g/5', '/g/6']);
  });

  it('refuses bad paging arguments and prefixes, naming the argument', async () => {
    const DIRECTORY =
      'query($id: ID!, $first: Int, $after: String) { volume(id: $id) { directory(path: "/g", first: $first, after: $after) { entries { path } } } }';
    for (const query of [ENTRIES, DIRECTORY]) {
      for (const [vars, field] of [
        [{ after: 'garbage' }, 'after'],
        [{ first: 0 }, 'first'],
        [{ first: -5 }, 'first'],
        [{ first: 201 }, 'first'],
      ] as const) {
        const res = await gw.gql(query, { id: g.volumeId, ...vars });
        const what = `${query.slice(30, 60)} ${JSON.stringify(vars)}`;
        expect(res.body.errors?.[0]?.extensions, what).toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: [field] }] });
      }
    }
    const prefix = await gw.gql(ENTRIES, { id: g.volumeId, prefix: '/a/../b' });
    expect(prefix.body.errors[0].extensions).toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: ['prefix'] }] });
    const backwards = await gw.gql(`query($id: ID!) { volume(id: $id) { entries(last: 2) { totalCount } } }`, { id: g.volumeId });
    expect(backwards.body.errors[0].extensions).toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: ['last'] }] });
  });

  it('pages directory(first, after) like the REST listing', async () => {
    const q =
      'query($id: ID!, $after: String) { volume(id: $id) { directory(path: "/g/", first: 4, after: $after) { entries { path } hasMore nextCursor } } }';
    const one = (await gw.gql(q, { id: g.volumeId })).body.data.volume.directory;
    expect(one).toMatchObject({ hasMore: true, entries: [{ path: '/g/0' }, { path: '/g/1' }, { path: '/g/2' }, { path: '/g/3' }] });
    const two = (await gw.gql(q, { id: g.volumeId, after: one.nextCursor })).body.data.volume.directory;
    expect(two).toEqual({ hasMore: false, nextCursor: null, entries: [{ path: '/g/4' }, { path: '/g/5' }, { path: '/g/6' }] });
  });

  it('serves directory(path) and entry(path)', async () => {
    const q = `query($id: ID!, $dir: String, $path: String!) { volume(id: $id) {
      directory(path: $dir) { path directories entries { path } } entry(path: $path) { path version contentText } } }`;
    const root = await gw.gql(q, { id: g.volumeId, path: '/g/0' });
    expect(root.body.errors).toBeUndefined();
    expect(root.body.data.volume).toEqual({
      directory: { path: '/', directories: ['/g/', '/other/'], entries: [] },
      entry: { path: '/g/0', version: 1, contentText: '0' },
    });
    const sub = await gw.gql(q, { id: g.volumeId, dir: 'g', path: 'g/1' });
    expect(sub.body.data.volume.directory.entries.map((e: any) => e.path)).toEqual([
      '/g/0',
      '/g/1',
      '/g/2',
      '/g/3',
      '/g/4',
      '/g/5',
      '/g/6',
    ]);
    expect(sub.body.data.volume.entry).toMatchObject({ path: '/g/1', contentText: null });
    const missing = await gw.gql(q, { id: g.volumeId, path: '/g/nothing' });
    expect(missing.body.data.volume.entry).toBeNull();
  });
});
