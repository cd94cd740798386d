import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type EmbeddingsServer, fakeEmbedderEnv, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { newVolume, putText } from './helpers/entries.js';
import { subscribe } from './helpers/graphql-ws.js';
import { ADMIN_KEY, call } from './helpers/http.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';
import { upload, uploadVolume } from './helpers/uploads.js';

// /metrics in Prometheus text format: each family the gateway exports is scraped before and after
// the event that should move it.

const ORG = 'org-metrics';
let gw: TestGateway;
let embeddings: EmbeddingsServer;

beforeAll(async () => {
  embeddings = await startEmbeddingsServer(64);
  gw = await startGateway({ ...fakeEmbedderEnv(embeddings, 64) });
});
afterAll(async () => {
  await gw?.stop();
  await embeddings?.close();
});

/** Scrapes /metrics and returns each sample by its name with labels, as Prometheus writes it. */
async function scrape(url = gw.url, headers: Record<string, string> = {}): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

const sample = (samples: Map<string, number>, name: string, labels: Record<string, string> = {}) => {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  let found = false;
  for (const [key, value] of samples) {
    const brace = key.indexOf('{');
    const metric = brace < 0 ? key : key.slice(0, brace);
    const rest = brace < 0 ? '' : key.slice(brace);
    if (metric !== name || !want.every((w) => rest.includes(w))) continue;
    found = true;
    total += value;
  }
  return found ? total : undefined;
};

it('counts HTTP requests by method, route template and status', async () => {
  const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
  const route = '/v1/orgs/:org_id/workspaces/:workspace_id/volumes/:volume_id/entries/:path{.+}';
  const before = sample(await scrape(), 'http_request_duration_seconds_count', { method: 'PUT', route, status: '201' }) ?? 0;
  await putText(gw, v, '/a.md');
  await putText(gw, v, '/b.md');
  const missing = await gw.call('GET', `${v.volumeUrl}/entries/nope.md`);
  expect(missing.status).toBe(404);
  const after = await scrape();
  expect(sample(after, 'http_request_duration_seconds_count', { method: 'PUT', route, status: '201' })).toBe(before + 2);
  expect(sample(after, 'http_request_duration_seconds_count', { method: 'GET', route, status: '404' })).toBeGreaterThanOrEqual(1);
  expect(sample(after, 'http_request_duration_seconds_bucket', { method: 'PUT', route, status: '201', le: '+Inf' })).toBe(before + 2);
  // Process metrics come along (prom-client's defaults).
  expect(sample(after, 'process_resident_memory_bytes')).toBeGreaterThan(0);
});

it('counts GraphQL operations by name, and their errors', async () => {
  const ok = await gw.gql('query MetricsProbe { __typename }');
  expect(ok.status).toBe(200);
  const bad = await gw.gql('query MetricsBroken { volume(id: "00000000-0000-0000-0000-000000000000") { id } }', {}, null);
  expect(bad.body.errors).toBeDefined();
  const after = await scrape();
  expect(sample(after, 'graphql_envelop_request', { operationName: 'MetricsProbe' })).toBe(1);
  expect(sample(after, 'graphql_envelop_request_duration_count', { operationName: 'MetricsProbe' })).toBe(1);
  expect(sample(after, 'graphql_envelop_error_result', { operationName: 'MetricsBroken' })).toBeGreaterThanOrEqual(1);
  expect(sample(after, 'http_request_duration_seconds_count', { method: 'POST', route: '/graphql', status: '200' })).toBeGreaterThanOrEqual(
    1,
  );
});

it('gauges open WebSockets and live subscriptions, up while they live and back down', async () => {
  const base = await scrape();
  expect(sample(base, 'graphql_active_subscriptions', { transport: 'ws' })).toBe(0);
  const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
  const sub = subscribe(gw.url, ADMIN_KEY, `subscription { entryChanged(volumeId: "${v.volumeId}") { path } }`);
  await sub.connected;
  await waitFor(async () => sample(await scrape(), 'graphql_active_subscriptions', { transport: 'ws' }) === 1);
  expect(sample(await scrape(), 'websocket_connections')).toBe(1);
  await sub.close();
  await waitFor(async () => {
    const s = await scrape();
    return sample(s, 'graphql_active_subscriptions', { transport: 'ws' }) === 0 && sample(s, 'websocket_connections') === 0;
  });
});

it('gauges the job queue and the indexing lag while the embedder holds, and both fall back to zero', async () => {
  const v = await newVolume(gw, ORG, { indexing_mode: 'auto', embedding_model_id: 'openai:fake-embed' });
  embeddings.hold();
  try {
    for (const p of ['/q1.md', '/q2.md', '/q3.md']) await putText(gw, v, p);
    await waitFor(async () => {
      const s = await scrape();
      const queued = (sample(s, 'jobs_queued', { kind: 'index_entry' }) ?? 0) > 0;
      return queued && (sample(s, 'indexing_lag_seconds') ?? 0) > 0.2;
    });
    const s = await scrape();
    expect(sample(s, 'jobs_oldest_age_seconds', { kind: 'index_entry' })).toBeGreaterThan(0.2);
  } finally {
    embeddings.release();
  }
  await waitFor(async () => {
    const s = await scrape();
    return (sample(s, 'jobs_queued', { kind: 'index_entry' }) ?? 0) === 0 && sample(s, 'indexing_lag_seconds') === 0;
  }, 30_000);
});

it('counts embedder failures by model', async () => {
  const model = 'openai:fake-embed';
  const before = sample(await scrape(), 'embedder_errors_total', { model }) ?? 0;
  const v = await newVolume(gw, ORG, { indexing_mode: 'auto', embedding_model_id: model });
  // The provider refuses this text (400): the embedding call fails, and the entry records it.
  embeddings.poison = 'refused-by-the-provider';
  try {
    await putText(gw, v, '/refused.md', 'text refused-by-the-provider here');
    await waitFor(async () => (sample(await scrape(), 'embedder_errors_total', { model }) ?? 0) >= before + 1, 30_000);
  } finally {
    embeddings.poison = undefined;
  }
});

it('counts chunking tasks by where they ran: small text in line, large text in a worker thread', async () => {
  const v = await newVolume(gw, ORG, { indexing_mode: 'auto' });
  const count = async (place: string) => sample(await scrape(), 'indexing_cpu_tasks_total', { kind: 'chunk', place, outcome: 'ok' }) ?? 0;
  const [inline, thread] = [await count('inline'), await count('thread')];
  await putText(gw, v, '/small.md', 'a few words');
  await putText(gw, v, '/large.md', 'many words '.repeat(4000));
  await waitFor(async () => (await count('inline')) >= inline + 1 && (await count('thread')) >= thread + 1, 30_000);
});

it('counts blob store failures by operation (a missing object is not one)', async () => {
  const v = await uploadVolume(gw, ORG, { indexing_mode: 'manual' });
  const before = await scrape();
  const missing = await gw.call('GET', v.download('/nothing.bin'));
  expect(missing.status).toBe(404);
  expect(sample(await scrape(), 'blob_store_errors_total', { operation: 'get' }) ?? 0).toBe(
    sample(before, 'blob_store_errors_total', { operation: 'get' }) ?? 0,
  );
  // The bucket's folder replaced by a file: the store cannot write there.
  const bucketDir = path.join(gw.dataDir, 'blobs', v.bucket);
  await fs.rm(bucketDir, { recursive: true, force: true });
  await fs.writeFile(bucketDir, 'not a folder');
  const res = await upload(gw, v.upload('/f.bin'), { data: Buffer.alloc(1024, 1) });
  expect(res.status).toBeGreaterThanOrEqual(500);
  expect(sample(await scrape(), 'blob_store_errors_total', { operation: 'put' })).toBeGreaterThanOrEqual(1);
  await fs.rm(bucketDir, { force: true });
});

describe('access', () => {
  let guarded: TestGateway;
  const token = 'metrics-token-0123456789';
  beforeAll(async () => {
    guarded = await startGateway({ METRICS_TOKEN: token, HOST: '0.0.0.0' });
  });
  afterAll(async () => {
    await guarded?.stop();
  });

  it('with METRICS_TOKEN set, a scrape needs it as a bearer token', async () => {
    const url = guarded.url.replace('0.0.0.0', '127.0.0.1');
    expect((await fetch(`${url}/metrics`)).status).toBe(403);
    expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(403);
    const s = await scrape(url, { authorization: `Bearer ${token}` });
    expect(sample(s, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });

  it('without METRICS_TOKEN, only clients on this host get /metrics', async () => {
    const open = await startGateway({ HOST: '0.0.0.0' });
    try {
      const port = new URL(open.url).port;
      expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
      const external = Object.values(os.networkInterfaces())
        .flat()
        .find((i) => i && i.family === 'IPv4' && !i.internal);
      // A machine with no network interface but loopback cannot show the refusal.
      if (external) {
        const res = await call(`http://${external.address}:${port}`, 'GET', '/metrics', undefined, { key: null });
        expect(res.status).toBe(403);
      }
    } finally {
      await open.stop();
    }
  });

  it('METRICS=false serves no /metrics', async () => {
    const off = await startGateway({ METRICS: 'false' });
    try {
      expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
    } finally {
      await off.stop();
    }
  });
});

describe('server mode', () => {
  let db: PgliteServer;
  let server: TestGateway;
  beforeAll(async () => {
    db = await startPgliteServer(10);
    server = await startGateway({ DATABASE_URL: db.url, DATABASE_POOL_SIZE: '3' });
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await db?.stop();
  });

  it('gauges the database pool', async () => {
    await server.call('GET', `/v1/orgs/${ORG}/workspaces`);
    const s = await scrape(server.url);
    expect(sample(s, 'db_pool_connections', { state: 'total' })).toBeGreaterThanOrEqual(1);
    expect(sample(s, 'db_pool_connections', { state: 'total' })).toBeLessThanOrEqual(3);
    expect(sample(s, 'db_pool_connections', { state: 'waiting' })).toBe(0);
  });
});
