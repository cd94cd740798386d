import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createKey, jobsIdle, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type EmbeddingsServer, fakeEmbedderEnv, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { subscribe } from './helpers/graphql-ws.js';
import { indexed } from './helpers/search.js';

let gw: TestGateway;
let emb: EmbeddingsServer;
const ORG = 'org-reindex';

beforeAll(async () => {
  emb = await startEmbeddingsServer(1024);
  // Batches of 16 entries (the default is 64): the tests below count batches of 40 entries.
  gw = await startGateway({ ...fakeEmbedderEnv(emb), REINDEX_BATCH_ENTRIES: '16' });
});
afterAll(async () => {
  await gw?.stop();
  await emb?.close();
});

const PROGRESS = `subscription($id: ID!) { reindexProgress(volumeId: $id) { volumeId status total processed failed percent embeddingModelId startedAt completedAt error } }`;

interface Progress {
  status: string;
  total: number;
  processed: number;
  failed: number;
  percent: number;
  embeddingModelId: string;
}

/** A volume (hash-1024) holding `n` indexed entries. */
async function filledVolume(n: number, body: Record<string, unknown> = {}): Promise<TestVolume> {
  const v = await newVolume(gw, ORG, body);
  for (let i = 0; i < n; i += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, n - i) }, (_, j) =>
        gw.call('PUT', v.entry(`/docs/${String(i + j).padStart(3, '0')}.md`), {
          content_text: `Document ${i + j} about topic ${(i + j) % 7}.`,
        }),
      ),
    );
  }
  await indexed(gw, v.volumeId, n);
  return v;
}

/** reindexProgress over graphql-ws. */
const subscribeWs = (volumeId: string, key = ADMIN_KEY) => subscribe<Progress>(gw.url, key, PROGRESS, { id: volumeId });

/** Moves the volume to the slow provider's model: the PATCH queues the reindex. */
async function switchModel(v: TestVolume) {
  const res = await gw.call('PATCH', v.volumeUrl, { embedding_model_id: 'openai:fake-embed' });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect((res.body.volume ?? res.body).reindex_status).toMatch(/queued|running/);
}

/** Progress never goes backwards and ends with exactly one final event. */
function expectMonotonic(events: Progress[], final: string) {
  for (let i = 1; i < events.length; i++) {
    const [a, b] = [events[i - 1] as Progress, events[i] as Progress];
    expect(b.processed + b.failed, JSON.stringify(events)).toBeGreaterThanOrEqual(a.processed + a.failed);
    expect(b.percent).toBeGreaterThanOrEqual(a.percent);
  }
  expect(events.at(-1)?.status).toBe(final);
  expect(events.filter((e) => ['completed', 'failed', 'cancelled'].includes(e.status))).toHaveLength(1);
}

describe('reindex progress', () => {
  it('streams over graphql-ws: every saved batch, never backwards, ending with completed', async () => {
    const v = await filledVolume(40);
    let sub: ReturnType<typeof subscribeWs>;
    try {
      // A reindex into another model embeds every chunk again (a same-model one reuses unchanged vectors).
      // The provider holds it until the subscriber is live (the stream starts with the current state).
      emb.hold();
      await switchModel(v);
      const again = await gw.gql(`mutation($id: ID!) { startReindex(volumeId: $id) { status total } }`, { id: v.volumeId });
      expect(again.body.data.startReindex.status).toMatch(/queued|running/);
      // Joining a reindex under way: the first event is where it stands now.
      sub = subscribeWs(v.volumeId);
      await waitFor(async () => sub.events.length > 0, 20_000);
      emb.release();
      await waitFor(async () => sub.completed, 30_000);
    } finally {
      emb.release();
    }
    await sub.close();
    expect(sub.errors).toEqual([]);
    expectMonotonic(sub.events, 'completed');
    const last = sub.events.at(-1) as Progress;
    expect(last).toMatchObject({ total: 40, processed: 40, failed: 0, percent: 100 });
    // Every batch of 16 entries is published as it is saved (the ticker may add more in between).
    const saved = new Set(sub.events.filter((e) => e.status === 'running').map((e) => e.processed));
    expect([...saved], JSON.stringify(sub.events)).toEqual(expect.arrayContaining([16, 32]));
    const vol = (await gw.call('GET', v.volumeUrl)).body;
    expect(vol.reindex_status).toBe('completed');
    expect(vol.reindex_progress).toMatchObject({ total: 40, processed: 40, failed: 0, percent: 100 });
    expect(Date.parse(vol.reindex_completed_at)).toBeGreaterThanOrEqual(Date.parse(vol.reindex_started_at));
  });

  it('streams over SSE to the final event, which ends the response', async () => {
    const v = await filledVolume(12);
    emb.delayMs = 40;
    try {
      const res = fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${ADMIN_KEY}` },
        body: JSON.stringify({ query: PROGRESS, variables: { id: v.volumeId } }),
      });
      // POST /reindex while the stream is open (REST: 202, body null as in the legacy API).
      const response = await res;
      expect(response.headers.get('content-type')).toMatch(/text\/event-stream/);
      const reader = response.body!.getReader();
      await switchModel(v);
      let text = '';
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      const events = text
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l).data.reindexProgress as Progress);
      expect(text).toContain('event: complete');
      expectMonotonic(events, 'completed');
      expect(events.at(-1)).toMatchObject({ processed: 12, total: 12 });
    } finally {
      emb.release();
      emb.delayMs = 0;
    }
  });

  it('is authorised when subscribing: another org gets NOT_FOUND, a key without volumes:read FORBIDDEN', async () => {
    const v = await newVolume(gw, ORG);
    const other = await createKey(gw, 'org-elsewhere', ['volumes:read', 'entries:read']);
    const weak = await createKey(gw, ORG, ['entries:read']);
    for (const [key, code] of [
      [other, 'NOT_FOUND'],
      [weak, 'FORBIDDEN'],
    ] as const) {
      const sub = subscribeWs(v.volumeId, key);
      await waitFor(async () => sub.errors.length > 0 || sub.completed);
      expect((sub.errors[0] as any)?.extensions?.code ?? JSON.stringify(sub.errors)).toBe(code);
      await sub.close();
    }
  });

  it('cancel stops a running reindex within the batch in hand, with one final cancelled event; a new reindex reuses its work', async () => {
    // 40 entries: batches of 16, 16 and 8 (one embedding request each).
    const v = await filledVolume(40);
    await jobsIdle(gw);
    // Texts this test sends to the provider (earlier tests' volumes hold the same sentences).
    const from = emb.texts.length;
    const mine = () => emb.texts.slice(from);
    let sub: ReturnType<typeof subscribeWs>;
    try {
      emb.hold();
      await switchModel(v);
      sub = subscribeWs(v.volumeId);
      await waitFor(async () => sub.events.length > 0, 20_000);
      // The provider answers the first batch and holds the second: the cancel lands mid-batch.
      // (A request that arrives after the release is the second batch's; the first may still
      // count as held for a moment after the gate opens.)
      emb.holdAfter = from + 16;
      const requestsBefore = emb.requests;
      emb.release();
      await waitFor(async () => emb.requests > requestsBefore && emb.held > 0, 20_000);
      const cancelled = await gw.gql(`mutation($id: ID!) { cancelReindex(volumeId: $id) { status } }`, { id: v.volumeId });
      // The worker is still embedding the batch in hand: the run is stopping, not stopped.
      expect(cancelled.body.data.cancelReindex.status).toBe('cancelling');
      expect((await gw.call('GET', `${v.volumeUrl}/reindex`)).body.reindex_status).toBe('cancelling');
      expect(await gw.app.database.prisma.job.count({ where: { volumeId: v.volumeId, kind: 'reindex' } })).toBe(1);
      // Texts are counted once the provider answers: the batch in hand is not among them yet.
      const answeredAtCancel = mine().length;
      emb.holdAfter = undefined;
      emb.release();
      await waitFor(async () => sub.completed, 20_000);
      expect(answeredAtCancel).toBe(16);
      // It stopped within the batch: it finished the batch in hand (16 texts) and took no other.
      expect(mine().length).toBe(answeredAtCancel + 16);
      const committedAtCancel = await gw.app.database.prisma.chunk.count({
        where: { volumeId: v.volumeId, embedderId: 'openai:fake-embed' },
      });
      expect(committedAtCancel).toBe(answeredAtCancel + 16);
    } finally {
      emb.holdAfter = undefined;
      emb.release();
    }
    await sub.close();
    expect(sub.errors).toEqual([]);
    expectMonotonic(sub.events, 'cancelled');
    expect(sub.events.some((e) => e.status === 'cancelling')).toBe(true);
    expect((await gw.call('GET', `${v.volumeUrl}/reindex`)).body.reindex_status).toBe('cancelled');
    expect(await gw.app.database.prisma.job.count({ where: { volumeId: v.volumeId, kind: 'reindex' } })).toBe(0);
    // Searches still use the complete old vectors.
    const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'document topic' });
    expect(res.body.total).toBeGreaterThan(0);
    expect(await gw.app.database.prisma.chunk.count({ where: { volumeId: v.volumeId, embedderId: 'hash-1024' } })).toBe(40);
    // A new reindex (REST: 202 and a null body, as in the legacy API) finishes the change and
    // reuses what the cancelled one committed: across both runs every text is embedded exactly once.
    const trigger = await gw.call('POST', `${v.volumeUrl}/reindex`, {});
    expect(trigger.status).toBe(202);
    expect(trigger.body).toBeNull();
    await waitFor(async () => (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed', 20_000);
    await jobsIdle(gw);
    expect(mine()).toHaveLength(40);
    expect(new Set(mine()).size).toBe(40);
    expect(await gw.app.database.prisma.chunk.count({ where: { volumeId: v.volumeId } })).toBe(40);
  });

  it('a reindex asked for while a cancelled one is stopping waits for it: the runs never overlap', async () => {
    const v = await filledVolume(12);
    await jobsIdle(gw);
    const from = emb.texts.length;
    const mine = () => emb.texts.slice(from);
    const sub = subscribeWs(v.volumeId);
    try {
      emb.hold();
      await switchModel(v);
      await waitFor(async () => emb.held > 0, 20_000);
      const cancelled = await gw.gql(`mutation($id: ID!) { cancelReindex(volumeId: $id) { status } }`, { id: v.volumeId });
      expect(cancelled.body.data.cancelReindex.status).toBe('cancelling');
      // Asked for again while the first run still holds its entry: queued behind it, not beside it.
      const again = await gw.gql(`mutation($id: ID!) { startReindex(volumeId: $id) { status } }`, { id: v.volumeId });
      expect(again.body.data.startReindex.status).toBe('cancelling');
      expect(await gw.app.database.prisma.job.count({ where: { volumeId: v.volumeId, kind: 'reindex' } })).toBe(1);
      emb.release();
      await waitFor(async () => sub.completed, 20_000);
      await waitFor(async () => (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed', 30_000);
    } finally {
      emb.release();
    }
    await sub.close();
    // The watcher of the first run saw it end as cancelled, once.
    expectMonotonic(sub.events, 'cancelled');
    await jobsIdle(gw);
    // Overlapping runs would have embedded some entry twice.
    expect(mine()).toHaveLength(12);
    expect(new Set(mine()).size).toBe(12);
    const byEmbedder = await gw.app.database.prisma.chunk.groupBy({ by: ['embedderId'], where: { volumeId: v.volumeId }, _count: true });
    expect(byEmbedder).toEqual([{ embedderId: 'openai:fake-embed', _count: 12 }]);
  });

  it('cancelling a queued reindex is final at once; cancelling with nothing to cancel changes nothing', async () => {
    const v = await newVolume(gw, ORG);
    const idle = await gw.gql(`mutation($id: ID!) { cancelReindex(volumeId: $id) { status } }`, { id: v.volumeId });
    expect(idle.body.data.cancelReindex.status).toBe('completed');
    // Both job workers busy on two other volumes' reindexes (held at the provider): v's stays queued.
    const [x, y] = [await filledVolume(2), await filledVolume(2)];
    await jobsIdle(gw);
    emb.hold();
    try {
      await switchModel(x as TestVolume);
      await switchModel(y as TestVolume);
      await waitFor(async () => emb.held >= 2, 20_000);
      const queued = await gw.gql(`mutation($id: ID!) { startReindex(volumeId: $id) { status } }`, { id: v.volumeId });
      expect(queued.body.data.startReindex.status).toBe('queued');
      const sub = subscribeWs(v.volumeId);
      await waitFor(async () => sub.events.length > 0, 20_000);
      const cancelled = await gw.gql(`mutation($id: ID!) { cancelReindex(volumeId: $id) { status } }`, { id: v.volumeId });
      expect(cancelled.body.data.cancelReindex.status).toBe('cancelled');
      await waitFor(async () => sub.completed, 20_000);
      await sub.close();
      expect(sub.events.map((e) => e.status)).toEqual(['queued', 'cancelled']);
      expect(await gw.app.database.prisma.job.count({ where: { volumeId: v.volumeId } })).toBe(0);
    } finally {
      emb.release();
    }
    await jobsIdle(gw);
    expect((await gw.call('GET', `${v.volumeUrl}/reindex`)).body.reindex_status).toBe('cancelled');
  });
});

describe('changing the embedding model', () => {
  it('reindexes into the new model while searches keep using the old vectors until it completes', async () => {
    const v = await filledVolume(32, {});
    expect((await gw.call('GET', v.volumeUrl)).body.embedding_model_id).toBe('hash-1024');
    await jobsIdle(gw);
    // The provider stops answering half way (after the first batch of 16), so the searches below land
    // mid-switch on any machine.
    emb.holdAfter = emb.texts.length + 16;
    const totals: number[] = [];
    try {
      const patched = await gw.call('PATCH', v.volumeUrl, { embedding_model_id: 'openai:fake-embed' });
      expect(patched.status).toBe(200);
      await waitFor(async () => emb.held > 0, 20_000);
      expect((await gw.gql(`query($id: ID!) { volume(id: $id) { searchEmbeddingModelId } }`, { id: v.volumeId })).body.data.volume).toEqual(
        {
          searchEmbeddingModelId: 'hash-1024',
        },
      );
      // Every search during the switch finds the documents: no window with an empty index.
      for (let i = 0; i < 3; i++) {
        const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'document about topic 3', mode: 'semantic' });
        totals.push(res.body.total);
      }
      emb.holdAfter = undefined;
      emb.release();
      await waitFor(async () => {
        const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'document about topic 3', mode: 'semantic' });
        totals.push(res.body.total);
        return (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed';
      }, 30_000);
    } finally {
      emb.holdAfter = undefined;
      emb.release();
    }
    expect(
      totals.every((t) => t > 0),
      JSON.stringify(totals),
    ).toBe(true);
    const byEmbedder = await gw.app.database.prisma.chunk.groupBy({ by: ['embedderId'], where: { volumeId: v.volumeId }, _count: true });
    expect(byEmbedder).toEqual([{ embedderId: 'openai:fake-embed', _count: 32 }]);
    const gql = await gw.gql(`query($id: ID!) { node(id: $id) { __typename } }`, { id: v.volumeId });
    expect(gql.status).toBe(200);
    const after = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'document about topic 3' });
    expect(after.body.total).toBeGreaterThan(0);
  });
});

describe('a model change meeting another indexer', () => {
  it('an entry that gained rows for the new model while its batch was embedded ends with exactly its own rows', async () => {
    const v = await filledVolume(20, {});
    await jobsIdle(gw);
    const db = gw.app.database.prisma;
    // Stands in for another indexer: before the first batch's rows are written, one of its entries
    // gets a row of the new model. The one-statement swap must leave that entry to the transaction,
    // which replaces the planted row with the entry's own.
    let planted: string | undefined;
    gw.app.runtime.hooks.beforeChunkSwap = async (ids) => {
      if (planted || ids.length === 0) return;
      planted = ids[0];
      await db.$executeRaw`
        INSERT INTO chunks (id, entry_id, volume_id, chunk_index, content, content_hash, embedder_id, dims, embedding)
        VALUES (gen_random_uuid()::text, ${planted}, ${v.volumeId}, 0, 'planted', 'planted', 'hash-384', 384, array_fill(0.1, ARRAY[384])::vector)`;
    };
    try {
      expect((await gw.call('PATCH', v.volumeUrl, { embedding_model_id: 'hash-384' })).status).toBe(200);
      await waitFor(async () => (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed', 30_000);
    } finally {
      gw.app.runtime.hooks.beforeChunkSwap = undefined;
    }
    expect(planted).toBeDefined();
    const rows = await db.chunk.findMany({ where: { volumeId: v.volumeId }, select: { entryId: true, embedderId: true, content: true } });
    expect(rows.filter((r) => r.content === 'planted')).toEqual([]);
    expect(rows.every((r) => r.embedderId === 'hash-384')).toBe(true);
    expect(rows.filter((r) => r.entryId === planted)).toHaveLength(1);
    expect(new Set(rows.map((r) => r.entryId)).size).toBe(20);
    const entries = await db.entry.findMany({
      where: { volumeId: v.volumeId },
      select: { isIndexed: true, indexError: true, totalChunks: true },
    });
    expect(entries.every((e) => e.isIndexed && e.indexError === null && e.totalChunks === 1)).toBe(true);
  });
});

describe('chunks kept in place', () => {
  const rows = async (volumeId: string) =>
    gw.app.database.prisma.chunk.findMany({
      where: { volumeId },
      select: { id: true, entryId: true, chunkIndex: true, contentHash: true, embedderId: true },
      orderBy: [{ entryId: 'asc' }, { chunkIndex: 'asc' }],
    });
  const reindexed = async (v: TestVolume) => {
    expect((await gw.call('POST', `${v.volumeUrl}/reindex`, {})).status).toBe(202);
    await waitFor(async () => (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed', 20_000);
    await jobsIdle(gw);
  };
  const paragraphs = (last: string) =>
    [
      'Tide tables list the times of high and low water at a harbour for every day of the year.',
      'Sailors read them before leaving port, since a falling tide can strand a keel on a sandbar.',
      'The moon pulls the oceans into two bulges, so most coasts see two high waters a day.',
      last,
    ].join('\n\n');

  it('a same-model reindex writes no row whose text is unchanged, and puts back a lost one', async () => {
    const v = await newVolume(gw, ORG, { chunk_size: 24, chunk_overlap: 0 });
    await gw.call('PUT', v.entry('/tides.md'), { content_text: paragraphs('Spring tides follow the full and new moon.') });
    for (const n of [1, 2, 3]) await gw.call('PUT', v.entry(`/short/${n}.md`), { content_text: `short note ${n} on harbour pilots` });
    await indexed(gw, v.volumeId, 4);
    await jobsIdle(gw);
    const before = await rows(v.volumeId);
    expect(before.filter((r) => r.chunkIndex > 0).length, 'the long entry spans several chunks').toBeGreaterThan(2);

    const indexedAt = async () =>
      Object.fromEntries(
        (await gw.app.database.prisma.entry.findMany({ where: { volumeId: v.volumeId }, select: { id: true, indexedAt: true } })).map(
          (e) => [e.id, e.indexedAt?.toISOString()],
        ),
      );
    const stamped = await indexedAt();
    await reindexed(v);
    expect(await rows(v.volumeId)).toEqual(before);
    // Nothing was written at all: every entry already recorded exactly this state.
    expect(await indexedAt()).toEqual(stamped);

    // A row lost (say, by a bad restore): the reindex writes that one again, and only that one.
    const lost = before[1] as (typeof before)[number];
    await gw.app.database.prisma.chunk.delete({ where: { id: lost.id } });
    await reindexed(v);
    const after = await rows(v.volumeId);
    expect(after.map(({ id, ...r }) => r)).toEqual(before.map(({ id, ...r }) => r));
    expect(after.filter((r) => !before.some((b) => b.id === r.id))).toEqual([{ ...lost, id: expect.any(String) }]);
    const moved = Object.entries(await indexedAt()).filter(([id, at]) => at !== stamped[id]);
    expect(moved.map(([id]) => id)).toEqual([lost.entryId]);
  });

  it('an edit to the end of a long entry rewrites only the chunks that changed; search follows the edit', async () => {
    const v = await newVolume(gw, ORG, { chunk_size: 24, chunk_overlap: 0 });
    await gw.call('PUT', v.entry('/tides.md'), { content_text: paragraphs('Spring tides follow the full and new moon.') });
    await indexed(gw, v.volumeId, 1);
    await jobsIdle(gw);
    const before = await rows(v.volumeId);
    await gw.call('PUT', v.entry('/tides.md'), { content_text: paragraphs('Neap tides come with the quarter moons.') });
    await waitFor(
      async () => (await gw.call('POST', `${v.volumeUrl}/search`, { query: 'neap quarter', mode: 'keyword' })).body.total === 1,
    );
    await jobsIdle(gw);
    const after = await rows(v.volumeId);
    expect(after).toHaveLength(before.length);
    const kept = after.filter((r) => before.some((b) => b.id === r.id));
    expect(kept.map((r) => r.chunkIndex)).toEqual(before.slice(0, -1).map((r) => r.chunkIndex));
    expect(after.at(-1)?.contentHash).not.toBe(before.at(-1)?.contentHash);
    expect((await gw.call('POST', `${v.volumeUrl}/search`, { query: 'spring full', mode: 'keyword' })).body.total).toBe(0);
  });
});
