import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type EmbeddingsServer, fakeEmbedderEnv, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

let gw: TestGateway;
let emb: EmbeddingsServer;
const ORG = 'org-search';

beforeAll(async () => {
  emb = await startEmbeddingsServer(1024);
  gw = await startGateway(fakeEmbedderEnv(emb));
});
afterAll(async () => {
  await gw?.stop();
  await emb?.close();
});

const search = (v: TestVolume, body: unknown, key?: string) => gw.call('POST', `${v.volumeUrl}/search`, body, key);

describe('search: shapes and bad input', () => {
  let v: TestVolume;
  beforeAll(async () => {
    v = await newVolume(gw, ORG);
    await putText(gw, v, '/notes/bees.md', 'Beekeeping: a hive needs a queen, worker bees and enough honey stores for winter.');
    await gw.call('PUT', v.entry('/notes/tide.json'), { content: { title: 'Tide pools', body: 'Anemones and crabs live in rock pools.' } });
    await indexed(gw, v.volumeId, 2);
  });

  it('answers the reference shape: results with entry_id, volume_id, volume_name, path, score, content_preview, chunk_index; query; total', async () => {
    const res = await search(v, { query: 'honey bees' });
    expect(res.status).toBe(200);
    expect(res.body.query).toBe('honey bees');
    expect(res.body.total).toBe(res.body.results.length);
    const [hit] = res.body.results;
    expect(Object.keys(hit).sort()).toEqual(['chunk_index', 'content_preview', 'entry_id', 'path', 'score', 'volume_id', 'volume_name']);
    expect(hit).toMatchObject({ path: '/notes/bees.md', volume_id: v.volumeId, chunk_index: 0 });
    expect(hit.content_preview).toContain('Beekeeping');
    expect(hit.score).toBeGreaterThan(0);
  });

  it('indexes JSON flattened to text, with its field names', async () => {
    const res = await search(v, { query: 'anemones', mode: 'keyword' });
    expect(res.body.results.map((r: any) => r.path)).toEqual(['/notes/tide.json']);
    expect(res.body.results[0].content_preview).toContain('body: Anemones');
  });

  it.each([
    [{ query: '' }, 'query', 'string_too_short'],
    [{ query: '   ' }, 'query', 'string_too_short'],
    [{}, 'query', 'missing'],
    [{ query: 'x', top_k: 0 }, 'top_k', 'greater_than_equal'],
    [{ query: 'x', top_k: 101 }, 'top_k', 'less_than_equal'],
    [{ query: 'x', top_k: 2.5 }, 'top_k', 'int_type'],
    [{ query: 'x', mode: 'fuzzy' }, 'mode', 'enum'],
    [{ query: 'x', filters: { colour: 'red' } }, 'filters', 'extra_forbidden'],
    [{ query: 'x', filters: { tags: 'a' } }, 'filters', 'list_type'],
    [{ query: 'x', filters: { content_type: 'pdf' } }, 'filters', 'enum'],
    [{ query: 'x', filters: { metadata: { a: { b: 1 } } } }, 'filters', undefined],
    [{ query: 'x', filters: { path_prefix: '/a/../b' } }, 'filters', undefined],
  ])('%j → 422 naming %s', async (body, field, type) => {
    const res = await search(v, body);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    const item = res.body.detail[0];
    expect(item.loc.slice(0, 2)).toEqual(['body', field]);
    if (type) expect(item.type).toBe(type);
  });

  it('a malformed body is 422, an unknown volume 404, a key without the search scope 403', async () => {
    expect((await search(v, '{"query":')).status).toBe(422);
    const other = await gw.call('POST', `${v.volumeUrl.replace(v.volumeId, '0190aaaa-aaaa-7aaa-8aaa-aaaaaaaaaaaa')}/search`, {
      query: 'x',
    });
    expect(other.status).toBe(404);
    const key = await createKey(gw, ORG, ['entries:read', 'volumes:read']);
    const res = await search(v, { query: 'bees' }, key);
    expect(res.status).toBe(403);
    expect(res.body.details.required_permission).toBe('search');
  });

  it('min_score drops weak hits; top_k caps them; the three modes all answer', async () => {
    for (const mode of ['hybrid', 'semantic', 'keyword']) {
      const res = await search(v, { query: 'bees honey winter', mode, top_k: 1 });
      expect(res.status).toBe(200);
      expect(res.body.results).toHaveLength(1);
      expect(res.body.results[0].path).toBe('/notes/bees.md');
    }
    const none = await search(v, { query: 'bees', min_score: 1 });
    expect(none.body.results.every((r: any) => r.score >= 1)).toBe(true);
  });
});

describe('search: which volumes it finds', () => {
  it('exactly those a GET of the volume finds, for every kind of key (the lookup is the same rule in SQL)', async () => {
    const scopes = ['volumes:read', 'entries:read', 'search'];
    const [mounted, shared, unshared, deleted, elsewhere] = [
      await newVolume(gw, ORG),
      await newVolume(gw, ORG),
      await newVolume(gw, ORG),
      await newVolume(gw, ORG),
      await newVolume(gw, 'org-search-other'),
    ] as TestVolume[];
    expect((await gw.call('POST', mounted!.mounts, { app_id: 'finder-app', path_pattern: '/docs/**', access_level: 'read' })).status).toBe(
      201,
    );
    expect((await gw.call('POST', `${shared!.volumeUrl}/make-shared`)).status).toBe(200);
    expect((await gw.call('DELETE', deleted!.volumeUrl)).status).toBe(200);
    const keys = {
      platform: undefined,
      org: await createKey(gw, ORG, scopes),
      app: await createKey(gw, ORG, scopes, 'finder-app'),
      otherOrg: await createKey(gw, 'org-search-other', scopes),
    };
    // A volume asked for under another workspace's route.
    const misrouted = { ...mounted!, volumeUrl: mounted!.volumeUrl.replace(mounted!.workspaceId, shared!.workspaceId) };
    const volumes = { mounted, shared, unshared, deleted, elsewhere, misrouted } as Record<string, TestVolume>;
    const seen: string[] = [];
    for (const [who, key] of Object.entries(keys)) {
      for (const [which, v] of Object.entries(volumes)) {
        const get = (await gw.call('GET', v.volumeUrl, undefined, key)).status;
        const found = await search(v, { query: 'anything' }, key);
        expect(found.status, `${who} searching ${which}: ${JSON.stringify(found.body)}`).toBe(get === 200 ? 200 : 404);
        if (get === 200) seen.push(`${who}:${which}`);
      }
    }
    // The cases differ: each key finds its own set (and the deleted and misrouted volumes nobody).
    expect(seen.sort()).toEqual(
      [
        'platform:mounted',
        'platform:shared',
        'platform:unshared',
        'platform:elsewhere',
        'org:mounted',
        'org:shared',
        'org:unshared',
        'app:mounted',
        'app:shared',
        'otherOrg:elsewhere',
      ].sort(),
    );
  });
});

describe('search: filters', () => {
  it('path prefix, tags, metadata, content type and writer app', async () => {
    const v = await newVolume(gw, ORG);
    const appKey = await createKey(gw, ORG, ['entries:write', 'entries:read', 'search'], 'writer-app');
    expect((await gw.call('POST', v.mounts, { app_id: 'writer-app', path_pattern: '/**', access_level: 'write' })).status).toBe(201);
    const text = 'compost heaps turn kitchen scraps into soil';
    await gw.call('PUT', v.entry('/garden/a.md'), { content_text: text, tags: ['green', 'home'], metadata: { lang: 'en', year: 2024 } });
    await gw.call('PUT', v.entry('/garden/b.md'), { content_text: text, tags: ['green'], metadata: { lang: 'fr' } });
    await gw.call('PUT', v.entry('/kitchen/c.md'), { content_text: text }, appKey);
    await gw.call('PUT', v.entry('/garden.md'), { content_text: text });
    await gw.call('PUT', v.entry('/garden/d.json'), { content: { note: text } });
    await indexed(gw, v.volumeId, 5);
    const paths = async (filters: object) => {
      const res = await search(v, { query: 'compost soil', filters });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body.results.map((r: any) => r.path).sort();
    };
    expect(await paths({ path_prefix: '/garden' })).toEqual(['/garden/a.md', '/garden/b.md', '/garden/d.json']);
    expect(await paths({ path_prefix: '/garden/' })).toEqual(['/garden/a.md', '/garden/b.md', '/garden/d.json']);
    expect(await paths({ tags: ['green', 'home'] })).toEqual(['/garden/a.md']);
    expect(await paths({ metadata: { lang: 'en' } })).toEqual(['/garden/a.md']);
    expect(await paths({ metadata: { year: 2024 } })).toEqual(['/garden/a.md']);
    expect(await paths({ content_type: 'json' })).toEqual(['/garden/d.json']);
    expect(await paths({ written_by_app_id: 'writer-app' })).toEqual(['/kitchen/c.md']);
    expect(await paths({ tags: ['green'], metadata: { lang: 'fr' } })).toEqual(['/garden/b.md']);
  });

  it('returns top_k hits when only 2% of chunks match the filter (iterative scan or exact fallback)', async () => {
    const v = await newVolume(gw, ORG);
    const topics = ['river', 'mountain', 'forest', 'desert', 'ocean', 'city', 'island', 'valley'];
    const total = 250;
    const tagged = 5;
    // Bulk writes through the API in parallel batches.
    for (let i = 0; i < total; i += 25) {
      await Promise.all(
        Array.from({ length: 25 }, (_, j) => {
          const n = i + j;
          const body = {
            content_text: `Travel notes ${n}: a trip to the ${topics[n % topics.length]} with friends, day ${n}.`,
            tags: n % (total / tagged) === 0 ? ['rare'] : ['common'],
          };
          return gw.call('PUT', v.entry(`/trips/${n}.md`), body);
        }),
      );
    }
    await indexed(gw, v.volumeId, total);
    const chunks = await gw.app.database.prisma.chunk.count({ where: { volumeId: v.volumeId } });
    expect(chunks).toBe(total);
    for (const mode of ['semantic', 'hybrid', 'keyword']) {
      const res = await search(v, { query: 'a trip to the ocean', mode, top_k: tagged, filters: { tags: ['rare'] } });
      expect(res.status).toBe(200);
      expect(res.body.results, mode).toHaveLength(tagged);
    }
  });
});

describe('search: indexing pipeline', () => {
  it('is incremental: re-embeds only chunks whose text changed, keeps is_indexed/total_chunks true', async () => {
    const v = await newVolume(gw, ORG, { embedding_model_id: 'openai:fake-embed', chunk_size: 16, chunk_overlap: 0 });
    const paras = [
      'Sourdough starters need flour and water daily.',
      'Tide tables predict high water at the harbour.',
      'Marathon training builds slowly over months.',
    ];
    await gw.call('PUT', v.entry('/doc.md'), { content_text: paras.join('\n\n') });
    await indexed(gw, v.volumeId, 1);
    let entry = (await gw.call('GET', v.entry('/doc.md'))).body;
    expect(entry.is_indexed).toBe(true);
    expect(entry.total_chunks).toBe(3);
    emb.texts.length = 0;
    await gw.call('PUT', v.entry('/doc.md'), { content_text: [paras[0], 'Tide tables also list low water times.', paras[2]].join('\n\n') });
    await waitFor(async () => (await gw.call('GET', v.entry('/doc.md'))).body.is_indexed);
    expect(emb.texts).toEqual(['Tide tables also list low water times.']);
    entry = (await gw.call('GET', v.entry('/doc.md'))).body;
    expect(entry.total_chunks).toBe(3);
    // A metadata-only rewrite embeds nothing.
    emb.texts.length = 0;
    await gw.call('PUT', v.entry('/doc.md'), {
      content_text: [paras[0], 'Tide tables also list low water times.', paras[2]].join('\n\n'),
      tags: ['x'],
    });
    await waitFor(async () => (await gw.call('GET', v.entry('/doc.md'))).body.is_indexed);
    expect(emb.texts).toEqual([]);
  });

  it('deleting an entry removes its chunks at once; an expired entry stops matching at once', async () => {
    const v = await newVolume(gw, ORG);
    await putText(gw, v, '/a.md', 'glacier hiking with crampons');
    await gw.call('PUT', v.entry('/b.md'), { content_text: 'glacier hiking with ropes', ttl_seconds: 1 });
    await indexed(gw, v.volumeId, 2);
    expect((await gw.call('DELETE', v.entry('/a.md'))).status).toBe(200);
    expect(await gw.app.database.prisma.chunk.count({ where: { entry: { path: '/a.md', volumeId: v.volumeId } } })).toBe(0);
    await waitFor(async () => (await search(v, { query: 'glacier hiking' })).body.total === 0, 5000);
  });

  it('manual mode indexes nothing until a reindex; unknown embedding models are 422', async () => {
    const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
    await putText(gw, v, '/m.md', 'volcanic soil grows excellent grapes');
    const bad = await gw.call('POST', v.volumeUrl.replace(/\/[^/]+$/, ''), { name: 'bad-model', embedding_model_id: 'nope-7' });
    expect(bad.status).toBe(422);
    expect(bad.body.detail[0].loc).toEqual(['body', 'embedding_model_id']);
    const badPatch = await gw.call('PATCH', v.volumeUrl, { embedding_model_id: 'hash-77' });
    expect(badPatch.status).toBe(422);
    const overlap = await gw.call('PATCH', v.volumeUrl, { chunk_size: 32, chunk_overlap: 32 });
    expect(overlap.status).toBe(422);
    expect(overlap.body.detail[0].loc).toEqual(['body', 'chunk_overlap']);
    expect((await search(v, { query: 'volcanic grapes' })).body.total).toBe(0);
    expect((await gw.call('GET', v.entry('/m.md'))).body.is_indexed).toBe(false);
    expect((await gw.call('POST', `${v.volumeUrl}/reindex`, {})).status).toBe(202);
    await waitFor(async () => (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed', 20_000);
    expect((await search(v, { query: 'volcanic grapes' })).body.total).toBe(1);
  });

  it('a provider that keeps failing records the failure on the entry; transient failures are retried', async () => {
    const v = await newVolume(gw, ORG, { embedding_model_id: 'openai:fake-embed' });
    emb.failNext = 2;
    await putText(gw, v, '/ok.md', 'retries recover from transient errors');
    await waitFor(async () => (await gw.call('GET', v.entry('/ok.md'))).body.is_indexed, 30_000);
    expect(emb.failNext).toBe(0);
    emb.poison = 'POISON';
    try {
      await putText(gw, v, '/bad.md', 'this text is POISON to the provider');
      await waitFor(
        async () => (await gw.app.database.prisma.entry.findFirst({ where: { volumeId: v.volumeId, path: '/bad.md' } }))?.indexError,
        60_000,
      );
      const row = await gw.app.database.prisma.entry.findFirstOrThrow({ where: { volumeId: v.volumeId, path: '/bad.md' } });
      expect(row.indexError).toContain('400');
      expect(row.isIndexed).toBe(false);
      expect(await gw.app.database.prisma.job.count({ where: { kind: 'index_entry', status: 'failed', volumeId: v.volumeId } })).toBe(1);
    } finally {
      emb.poison = undefined;
    }
  }, 60_000);
  it('entries queued together are embedded together; an entry the provider refuses fails alone', async () => {
    const v = await newVolume(gw, ORG, { embedding_model_id: 'openai:fake-embed' });
    const entryOf = (path: string) => gw.app.database.prisma.entry.findFirstOrThrow({ where: { volumeId: v.volumeId, path } });
    // 24 writes land while the provider holds the first requests: the rest wait queued and are
    // claimed in batches, one provider request per batch (not one per entry).
    const before = emb.requests;
    emb.hold();
    try {
      await Promise.all(Array.from({ length: 24 }, (_, i) => putText(gw, v, `/batch/${i}.md`, `batched text number ${i}`)));
      await waitFor(async () => emb.held > 0, 20_000);
    } finally {
      emb.release();
    }
    await indexed(gw, v.volumeId, 24);
    expect(emb.requests - before).toBeLessThanOrEqual(6);
    // One refused text in a batch: the others are indexed, only it waits for a retry with the error.
    emb.hold();
    emb.poison = 'POISON';
    try {
      await Promise.all(
        Array.from({ length: 8 }, (_, i) => putText(gw, v, `/mixed/${i}.md`, i === 3 ? 'mixed text POISON' : `mixed text number ${i}`)),
      );
      await waitFor(async () => emb.held > 0, 20_000);
      emb.release();
      await waitFor(
        async () => (await gw.app.database.prisma.entry.count({ where: { volumeId: v.volumeId, isIndexed: true } })) === 24 + 7,
        20_000,
      );
      // Its job keeps the 400 (queued for a retry; on a slow machine its retries may already have run
      // out, and then the entry records the error too).
      await waitFor(
        async () =>
          (await gw.app.database.prisma.job.count({
            where: { volumeId: v.volumeId, kind: 'index_entry', lastError: { contains: '400' } },
          })) === 1,
        20_000,
      );
      const poisoned = await entryOf('/mixed/3.md');
      expect(poisoned.isIndexed).toBe(false);
      if (poisoned.indexError !== null) expect(poisoned.indexError).toContain('400');
      for (const i of [0, 1, 2, 4, 5, 6, 7]) expect((await entryOf(`/mixed/${i}.md`)).isIndexed).toBe(true);
    } finally {
      emb.poison = undefined;
      emb.release();
    }
  });
});
