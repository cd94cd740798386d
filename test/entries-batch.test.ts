import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { expectExactUsage, newVolume, type TestVolume } from './helpers/entries.js';

// Batch writes (REST POST …/volumes/{id}/batch, GraphQL writeEntries): many JSON/text entries of one
// volume in one transaction, each checked as a single write is, written all together or not at all.

const ORG = 'batch';
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.stop();
});

const batchUrl = (v: TestVolume) => `${v.volumeUrl}/batch`;
const adminHeaders = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };
const paths = async (v: TestVolume) => {
  const res = await gw.call('GET', `${v.volumeUrl}/list?path=/&limit=200`);
  const sub = await gw.call('GET', `${v.volumeUrl}/list?path=/docs/&limit=200`);
  return [...res.body.entries, ...(sub.body.entries ?? [])].map((e: { path: string }) => e.path).sort();
};

describe('REST batch writes', () => {
  it('creates and replaces entries in order, and answers each as a PUT would', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    expect((await gw.call('PUT', v.entry('/docs/old.md'), { content_text: 'v1' })).status).toBe(201);
    const res = await gw.call('POST', batchUrl(v), {
      entries: [
        { path: 'docs/a.json', content: { n: 1 }, tags: ['t'], metadata: { k: 'v' } },
        { path: '/docs/old.md', content_text: 'v2', expected_version: 1 },
        { path: '/b.txt', content_text: 'bee', create_only: true, ttl_seconds: 3600 },
      ],
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ message: 'Entries written successfully', created: 2, updated: 1 });
    expect(res.body.entries.map((e: any) => [e.path, e.version, e.content_type])).toEqual([
      ['/docs/a.json', 1, 'json'],
      ['/docs/old.md', 2, 'text'],
      ['/b.txt', 1, 'text'],
    ]);
    const a = await gw.call('GET', v.entry('/docs/a.json'));
    expect(a.body).toMatchObject({ content: { n: 1 }, tags: ['t'], metadata: { k: 'v' }, mime_type: 'application/json' });
    expect((await gw.call('GET', v.entry('/docs/old.md'))).body.content_text).toBe('v2');
    expect((await gw.call('GET', v.entry('/b.txt'))).body.expires_at).toEqual(expect.any(String));
    await expectExactUsage(gw, v);
  });

  it('writes nothing when any entry is refused, and names it', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    expect((await gw.call('PUT', v.entry('/kept.md'), { content_text: 'v1' })).status).toBe(201);
    const stale = await gw.call('POST', batchUrl(v), {
      entries: [
        { path: '/new-1.md', content_text: 'one' },
        { path: '/kept.md', content_text: 'two', expected_version: 7 },
      ],
    });
    expect(stale.status, JSON.stringify(stale.body)).toBe(409);
    expect(stale.body).toMatchObject({ error: 'CONFLICT', details: { path: '/kept.md', current_version: 1, expected_version: 7 } });
    const taken = await gw.call('POST', batchUrl(v), {
      entries: [
        { path: '/new-2.md', content_text: 'one' },
        { path: '/kept.md', content_text: 'two', create_only: true },
      ],
    });
    expect(taken.status).toBe(409);
    expect(await paths(v)).toEqual(['/kept.md']);
    expect((await gw.call('GET', v.entry('/kept.md'))).body.version).toBe(1);
    await expectExactUsage(gw, v);
  });

  it('refuses bad input with 422 naming entries[i] and the field, before writing anything', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    const cases: [unknown, (string | number)[]][] = [
      [{ entries: [{ path: '/a', content_text: 'x' }, { path: '/b' }] }, ['body', 'entries', 1, 'content']],
      [
        {
          entries: [
            { path: '/a', content_text: 'x' },
            { path: '/b', content_text: 'y', tags: 'nope' },
          ],
        },
        ['body', 'entries', 1, 'tags'],
      ],
      [
        {
          entries: [
            { path: '/a', content_text: 'x' },
            { path: 'a', content_text: 'y' },
          ],
        },
        ['body', 'entries', 1, 'path'],
      ],
      [{ entries: [{ path: '/a/../b', content_text: 'x' }] }, ['body', 'entries', 0, 'path']],
      [{ entries: [{ content_text: 'x' }] }, ['body', 'entries', 0, 'path']],
      [{ entries: [{ path: '/a', content_text: 'x', expected_version: 0 }] }, ['body', 'entries', 0, 'expected_version']],
      [{ entries: [] }, ['body', 'entries']],
      [{ entries: Array.from({ length: 101 }, (_, i) => ({ path: `/e${i}`, content_text: 'x' })) }, ['body', 'entries']],
      [{ nope: true }, ['body', 'entries']],
    ];
    for (const [body, loc] of cases) {
      const res = await gw.call('POST', batchUrl(v), body);
      expect(res.status, JSON.stringify(body).slice(0, 200)).toBe(422);
      expect(
        res.body.detail.map((d: { loc: unknown }) => d.loc),
        JSON.stringify(body).slice(0, 200),
      ).toContainEqual(loc);
    }
    const ifMatch = await fetch(gw.url + batchUrl(v), {
      method: 'POST',
      headers: { ...adminHeaders, 'if-match': '"1"' },
      body: JSON.stringify({ entries: [{ path: '/a', content_text: 'x' }] }),
    });
    expect(ifMatch.status).toBe(422);
    expect((await ifMatch.json()).detail[0].loc).toEqual(['header', 'if-match']);
    expect(await paths(v)).toEqual([]);
  });

  it('holds the whole batch to the quotas, counting its own earlier entries; usage stays exact under concurrent batches', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual', max_file_count: 40 });
    const over = await gw.call('POST', batchUrl(v), {
      entries: Array.from({ length: 41 }, (_, i) => ({ path: `/q/e${i}.md`, content_text: 'x' })),
    });
    expect(over.status, JSON.stringify(over.body)).toBe(507);
    expect(over.body).toMatchObject({ error: 'QUOTA_EXCEEDED', details: { quota: 'max_file_count' } });
    await expectExactUsage(gw, v, 'after the refused batch');
    expect((await expectExactUsage(gw, v)).entry_count).toBe(0);

    // Bytes too: every entry fits alone, the batch does not.
    const sized = await newVolume(gw, ORG, { indexing_mode: 'manual', max_size_bytes: 1000 });
    const big = await gw.call('POST', batchUrl(sized), {
      entries: Array.from({ length: 3 }, (_, i) => ({ path: `/s${i}.txt`, content_text: 'x'.repeat(400) })),
    });
    expect(big.status, JSON.stringify(big.body)).toBe(507);
    expect(big.body).toMatchObject({ error: 'QUOTA_EXCEEDED', details: { quota: 'max_size_bytes' } });
    expect((await expectExactUsage(gw, sized)).used_bytes).toBe(0);
    const fits = await gw.call('POST', batchUrl(sized), {
      entries: Array.from({ length: 2 }, (_, i) => ({ path: `/s${i}.txt`, content_text: 'x'.repeat(400) })),
    });
    expect(fits.status).toBe(200);
    // Replacing with smaller bodies frees room within the same batch.
    const shrink = await gw.call('POST', batchUrl(sized), {
      entries: [
        { path: '/s0.txt', content_text: 'x' },
        { path: '/s1.txt', content_text: 'x' },
        { path: '/s2.txt', content_text: 'x'.repeat(900) },
      ],
    });
    expect(shrink.status, JSON.stringify(shrink.body)).toBe(200);
    expect((await expectExactUsage(gw, sized)).used_bytes).toBe(902);

    // 12 concurrent batches of 5 new entries: exactly 8 fit, each whole.
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, b) =>
        gw.call('POST', batchUrl(v), {
          entries: Array.from({ length: 5 }, (_, i) => ({ path: `/c/b${b}-e${i}.md`, content_text: `${b}.${i}` })),
        }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([...Array(8).fill(200), ...Array(4).fill(507)]);
    const rows = await expectExactUsage(gw, v, 'after concurrent batches');
    expect(rows.entry_count).toBe(40);
  });

  it('an app key writes only where its mount lets it, for every entry of the batch', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    expect((await gw.call('POST', v.mounts, { app_id: 'loader', path_pattern: '/docs/**', access_level: 'write' })).status).toBe(201);
    const key = await createKey(gw, ORG, ['entries:read', 'entries:write', 'volumes:read'], 'loader');
    const outside = await gw.call(
      'POST',
      batchUrl(v),
      {
        entries: [
          { path: '/docs/a.md', content_text: 'in' },
          { path: '/private/b.md', content_text: 'out' },
        ],
      },
      key,
    );
    expect(outside.status).toBe(404);
    expect(await paths(v)).toEqual([]);
    const inside = await gw.call(
      'POST',
      batchUrl(v),
      { entries: [{ path: '/docs/a.md', content_text: 'in', written_by_app_id: 'forged' }] },
      key,
    );
    expect(inside.status, JSON.stringify(inside.body)).toBe(200);
    expect(inside.body.entries[0].written_by_app_id).toBe('loader');
  });

  it('is refused under another holder’s exclusive path lock, and passes with the lock id', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    const lock = await gw.call('POST', `${v.volumeUrl}/locks`, { partition: '/locked/', app_id: 'holder', ttl_seconds: 600 });
    expect(lock.status, JSON.stringify(lock.body)).toBe(201);
    const body = {
      entries: [
        { path: '/free.md', content_text: 'a' },
        { path: '/locked/x.md', content_text: 'b' },
      ],
    };
    const refused = await gw.call('POST', batchUrl(v), body);
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ error: 'LOCKED', details: { partition: '/locked/', holder_app_id: 'holder' } });
    expect(await paths(v)).toEqual([]);
    const lockId = lock.body.lock?.lock_id ?? lock.body.lock_id;
    const res = await fetch(gw.url + batchUrl(v), {
      method: 'POST',
      headers: { ...adminHeaders, 'x-lock-id': lockId },
      body: JSON.stringify(body),
    });
    expect(res.status, await res.clone().text()).toBe(200);
  });

  it('checks entries in order: the first refusal is the first refused entry’s, whatever refuses it', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    expect((await gw.call('PUT', v.entry('/kept.md'), { content_text: 'v1' })).status).toBe(201);
    expect((await gw.call('POST', `${v.volumeUrl}/locks`, { partition: '/locked/', app_id: 'holder', ttl_seconds: 600 })).status).toBe(201);
    const stale = { path: '/kept.md', content_text: 'two', expected_version: 7 };
    const locked = { path: '/locked/x.md', content_text: 'b' };
    const first = await gw.call('POST', batchUrl(v), { entries: [stale, locked] });
    expect(first.body).toMatchObject({ error: 'CONFLICT', details: { path: '/kept.md', expected_version: 7 } });
    const second = await gw.call('POST', batchUrl(v), { entries: [locked, stale] });
    expect(second.body).toMatchObject({ error: 'LOCKED', details: { partition: '/locked/' } });
  });

  it('replaces an expired entry as a new one (version 1), counters exact', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    expect((await gw.call('PUT', v.entry('/gone.md'), { content_text: 'old text', ttl_seconds: 60 })).status).toBe(201);
    await gw.app.database.prisma.$executeRaw`UPDATE entries SET expires_at = now() - interval '1 minute' WHERE volume_id = ${v.volumeId}`;
    const res = await gw.call('POST', batchUrl(v), {
      entries: [
        { path: '/gone.md', content_text: 'new', create_only: true },
        { path: '/other.md', content_text: 'x' },
      ],
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ created: 2, updated: 0 });
    expect(res.body.entries.map((e: any) => [e.path, e.version])).toEqual([
      ['/gone.md', 1],
      ['/other.md', 1],
    ]);
    const got = await gw.call('GET', v.entry('/gone.md'));
    expect(got.body).toMatchObject({ content_text: 'new', expires_at: null });
    await expectExactUsage(gw, v);
  });

  it('makes room by purging expired entries when a quota refuses the batch (entry by entry), and indexes what it wrote', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'auto', max_file_count: 2 });
    for (const p of ['/old-1.md', '/old-2.md'])
      expect((await gw.call('PUT', v.entry(p), { content_text: 'old', ttl_seconds: 60 })).status).toBe(201);
    await gw.app.database.prisma.$executeRaw`UPDATE entries SET expires_at = now() - interval '1 minute' WHERE volume_id = ${v.volumeId}`;
    const res = await gw.call('POST', batchUrl(v), {
      entries: [
        { path: '/new-1.md', content_text: 'quince orchard' },
        { path: '/new-2.md', content_text: 'quince jelly' },
      ],
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(await paths(v)).toEqual(['/new-1.md', '/new-2.md']);
    await expectExactUsage(gw, v);
    const found = await waitFor(async () => {
      const r = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'quince', mode: 'keyword' });
      return r.body.results?.length === 2 ? r.body.results : undefined;
    });
    expect(found.map((h: { path: string }) => h.path).sort()).toEqual(['/new-1.md', '/new-2.md']);
  });

  it('costs the same statements for 5 entries as for 50 new ones', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'auto' });
    const counts: number[] = [];
    for (const [n, at] of [
      [5, 'a'],
      [50, 'b'],
    ] as const) {
      const entries = Array.from({ length: n }, (_, i) => ({ path: `/${at}/${i}.md`, content_text: `text ${i}` }));
      gw.queries.length = 0;
      const res = await gw.call('POST', batchUrl(v), { entries });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      counts.push(gw.queries.length);
    }
    expect(counts[1], `statements for 5 vs 50 entries: ${counts}`).toBe(counts[0]);
    await expectExactUsage(gw, v);
  });

  it('queues indexing for every entry of an auto volume: all become searchable', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'auto' });
    const words = ['aardvark', 'bison', 'caracal', 'dugong', 'echidna'];
    const res = await gw.call('POST', batchUrl(v), {
      entries: words.map((w) => ({ path: `/animals/${w}.md`, content_text: `The ${w} is the animal of this note.` })),
    });
    expect(res.status).toBe(200);
    for (const w of words) {
      const hit = await waitFor(async () => {
        const s = await gw.call('POST', `${v.volumeUrl}/search`, { query: w, mode: 'keyword', top_k: 1 });
        return s.body.results?.[0]?.path === `/animals/${w}.md` && s.body.results[0];
      });
      expect(hit.path).toBe(`/animals/${w}.md`);
    }
  });
});

describe('GraphQL writeEntries', () => {
  it('writes the batch and answers with created, updated and the entries in order', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    expect((await gw.call('PUT', v.entry('/b.md'), { content_text: 'old' })).status).toBe(201);
    const mutation = `mutation($id: ID!, $entries: [WriteEntriesItem!]!) {
      writeEntries(volumeId: $id, entries: $entries) { created updated entries { path version contentText content } } }`;
    const res = await gw.gql(mutation, {
      id: v.volumeId,
      entries: [
        { path: '/a.json', content: { x: 1 } },
        { path: '/b.md', contentText: 'new', expectedVersion: 1 },
      ],
    });
    expect(res.body.errors).toBeUndefined();
    expect(res.body.data.writeEntries).toEqual({
      created: 1,
      updated: 1,
      entries: [
        { path: '/a.json', version: 1, contentText: null, content: { x: 1 } },
        { path: '/b.md', version: 2, contentText: 'new', content: null },
      ],
    });

    const bad = await gw.gql(mutation, { id: v.volumeId, entries: [{ path: '/c.md', contentText: 'c' }, { path: '/d.md' }] });
    expect(bad.body.errors[0].extensions.code).toBe('VALIDATION_FAILED');
    expect(bad.body.errors[0].extensions.fields).toEqual([expect.objectContaining({ path: ['entries', 1, 'content'] })]);
    expect((await gw.call('GET', v.entry('/c.md'))).status).toBe(404);
  });
});
