import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type EmbeddingsServer, fakeEmbedderEnv, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { newVolume, type TestVolume } from './helpers/entries.js';
import { indexed } from './helpers/search.js';

let gw: TestGateway;
let emb: EmbeddingsServer;
const ORG = 'org-reindex';

beforeAll(async () => {
  emb = await startEmbeddingsServer(1024);
  gw = await startGateway(fakeEmbedderEnv(emb));
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

function subscribeWs(volumeId: string, key = ADMIN_KEY) {
  const client = createClient({
    url: `${gw.url.replace('http', 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${key}` },
    retryAttempts: 0,
  });
  const events: Progress[] = [];
  const errors: unknown[] = [];
  let completed = false;
  client.subscribe<{ reindexProgress: Progress }>(
    { query: PROGRESS, variables: { id: volumeId } },
    {
      next: (msg) => {
        if (msg.errors) errors.push(...msg.errors);
        if (msg.data) events.push(msg.data.reindexProgress);
      },
      error: (err) => errors.push(err),
      complete: () => {
        completed = true;
      },
    },
  );
  return { events, errors, isComplete: () => completed, dispose: () => client.dispose() };
}

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
  it('streams over graphql-ws: at least every second, never backwards, ending with completed', async () => {
    const v = await filledVolume(24);
    emb.delayMs = 60;
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
      await waitFor(async () => sub.isComplete(), 30_000);
    } finally {
      emb.release();
      emb.delayMs = 0;
    }
    await sub.dispose();
    expect(sub.errors).toEqual([]);
    expectMonotonic(sub.events, 'completed');
    const last = sub.events.at(-1) as Progress;
    expect(last).toMatchObject({ total: 24, processed: 24, failed: 0, percent: 100 });
    // 24 entries × ≥ 60 ms ≈ 1.5 s or more: the ticker and the batches both spoke.
    expect(sub.events.filter((e) => e.status === 'running').length).toBeGreaterThanOrEqual(3);
    const vol = (await gw.call('GET', v.volumeUrl)).body;
    expect(vol.reindex_status).toBe('completed');
    expect(vol.reindex_progress).toMatchObject({ total: 24, processed: 24, failed: 0, percent: 100 });
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
      await waitFor(async () => sub.errors.length > 0 || sub.isComplete());
      expect((sub.errors[0] as any)?.extensions?.code ?? JSON.stringify(sub.errors)).toBe(code);
      await sub.dispose();
    }
  });

  it('cancel stops a running reindex with a final cancelled event; searches keep working', async () => {
    const v = await filledVolume(20);
    emb.delayMs = 100;
    let sub: ReturnType<typeof subscribeWs>;
    try {
      emb.hold();
      await switchModel(v);
      sub = subscribeWs(v.volumeId);
      await waitFor(async () => sub.events.length > 0, 20_000);
      emb.release();
      await waitFor(async () => sub.events.some((e) => e.processed >= 2), 20_000);
      const cancelled = await gw.gql(`mutation($id: ID!) { cancelReindex(volumeId: $id) { status } }`, { id: v.volumeId });
      expect(cancelled.body.data.cancelReindex.status).toBe('cancelled');
      await waitFor(async () => sub.isComplete(), 10_000);
    } finally {
      emb.release();
      emb.delayMs = 0;
    }
    await sub.dispose();
    expect(sub.events.at(-1)?.status).toBe('cancelled');
    expect((await gw.call('GET', `${v.volumeUrl}/reindex`)).body.reindex_status).toBe('cancelled');
    expect(await gw.app.database.prisma.job.count({ where: { volumeId: v.volumeId, kind: 'reindex' } })).toBe(0);
    // Searches still use the complete old vectors.
    const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'document topic' });
    expect(res.body.total).toBeGreaterThan(0);
    expect(await gw.app.database.prisma.chunk.count({ where: { volumeId: v.volumeId, embedderId: 'hash-1024' } })).toBe(20);
    // A new reindex (REST: 202 and a null body, as in the legacy API) finishes the change and
    // reuses what the cancelled one embedded.
    emb.texts.length = 0;
    const trigger = await gw.call('POST', `${v.volumeUrl}/reindex`, {});
    expect(trigger.status).toBe(202);
    expect(trigger.body).toBeNull();
    await waitFor(async () => (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed', 20_000);
    expect(emb.texts.length).toBeLessThan(20);
    expect(await gw.app.database.prisma.chunk.count({ where: { volumeId: v.volumeId } })).toBe(20);
  });
});

describe('changing the embedding model', () => {
  it('reindexes into the new model while searches keep using the old vectors until it completes', async () => {
    const v = await filledVolume(16, {});
    expect((await gw.call('GET', v.volumeUrl)).body.embedding_model_id).toBe('hash-1024');
    emb.delayMs = 50;
    const totals: number[] = [];
    try {
      const patched = await gw.call('PATCH', v.volumeUrl, { embedding_model_id: 'openai:fake-embed' });
      expect(patched.status).toBe(200);
      // Every search during the switch finds the documents: no window with an empty index.
      await waitFor(async () => {
        const res = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'document about topic 3', mode: 'semantic' });
        totals.push(res.body.total);
        return (await gw.call('GET', v.volumeUrl)).body.reindex_status === 'completed';
      }, 30_000);
    } finally {
      emb.release();
      emb.delayMs = 0;
    }
    expect(totals.length).toBeGreaterThan(2);
    expect(
      totals.every((t) => t > 0),
      JSON.stringify(totals),
    ).toBe(true);
    const byEmbedder = await gw.app.database.prisma.chunk.groupBy({ by: ['embedderId'], where: { volumeId: v.volumeId }, _count: true });
    expect(byEmbedder).toEqual([{ embedderId: 'openai:fake-embed', _count: 16 }]);
    const gql = await gw.gql(`query($id: ID!) { node(id: $id) { __typename } }`, { id: v.volumeId });
    expect(gql.status).toBe(200);
    const after = await gw.call('POST', `${v.volumeUrl}/search`, { query: 'document about topic 3' });
    expect(after.body.total).toBeGreaterThan(0);
  });
});
