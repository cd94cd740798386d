import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { type EmbeddingsServer, fakeEmbedderEnv, startEmbeddingsServer } from './helpers/embeddings-server.js';
import { newVolume } from './helpers/entries.js';
import { call } from './helpers/http.js';
import { upload, uploadVolume } from './helpers/uploads.js';

// OpenTelemetry: with an exporter (here in memory; OTEL_EXPORTER_OTLP_ENDPOINT in production) every
// HTTP request is a server span continuing the caller's traceparent, GraphQL operations, Prisma's
// queries, blob store calls, jobs and embedding calls are spans below it, and log lines carry the
// trace id.

const ORG = 'org-tracing';
const exporter = new InMemorySpanExporter();
const logs: string[] = [];
let gw: TestGateway;
let embeddings: EmbeddingsServer;

beforeAll(async () => {
  embeddings = await startEmbeddingsServer(64);
  gw = await startGateway({ ...fakeEmbedderEnv(embeddings, 64), LOG_LEVEL: 'info' }, { logs, spanExporter: exporter });
});
afterAll(async () => {
  await gw?.stop();
  await embeddings?.close();
});

const spans = () => exporter.getFinishedSpans();
const inTrace = (traceId: string) => spans().filter((s) => s.spanContext().traceId === traceId);
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
/** True when `child` sits somewhere below `ancestor` in its trace. */
function below(child: ReadableSpan, ancestor: ReadableSpan): boolean {
  const byId = new Map(inTrace(child.spanContext().traceId).map((s) => [s.spanContext().spanId, s]));
  for (let p = parentOf(child); p; p = byId.get(p) ? parentOf(byId.get(p) as ReadableSpan) : undefined) {
    if (p === ancestor.spanContext().spanId) return true;
  }
  return false;
}

const traceId = () => Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
/** Request options carrying a traceparent that names trace `tid` (the caller's span is made up). */
const tracedAs = (tid: string) => ({ headers: { traceparent: `00-${tid}-00f067aa0ba902b7-01` } });

it('a REST request is a server span continuing the caller traceparent, with Prisma statements below it and the trace id in its log line', async () => {
  const tid = traceId();
  const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
  const res = await call(gw.url, 'PUT', v.entry('/t/a.md'), { content_text: 'traced' }, tracedAs(tid));
  expect(res.status).toBe(201);
  const server = await waitFor(async () => inTrace(tid).find((s) => s.name.startsWith('PUT /v1/')));
  expect(server.name).toBe('PUT /v1/orgs/:org_id/workspaces/:workspace_id/volumes/:volume_id/entries/:path{.+}');
  expect(parentOf(server)).toBe('00f067aa0ba902b7');
  expect(server.attributes).toMatchObject({ 'http.response.status_code': 201, 'http.request.method': 'PUT' });
  const prisma = inTrace(tid).filter((s) => s.name.startsWith('prisma:'));
  expect(prisma.length).toBeGreaterThan(0);
  expect(prisma.every((s) => below(s, server))).toBe(true);
  const line = logs
    .flatMap((l) => l.split('\n').filter(Boolean))
    .map((l) => JSON.parse(l))
    .find((l) => l.msg === 'request' && l.request_id === res.headers.get('x-request-id'));
  expect(line?.trace_id).toBe(tid);
});

it('a GraphQL operation is a span below its request, and its resolvers statements below it', async () => {
  const tid = traceId();
  const res = await call(
    gw.url,
    'POST',
    '/graphql',
    { query: 'query TracedWorkspaces { workspaces(orgId: "org-tracing") { totalCount } }', operationName: 'TracedWorkspaces' },
    tracedAs(tid),
  );
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const op = await waitFor(async () => inTrace(tid).find((s) => s.name === 'graphql.query TracedWorkspaces'));
  const server = inTrace(tid).find((s) => s.name === 'POST /graphql') as ReadableSpan;
  expect(server).toBeDefined();
  expect(below(op, server)).toBe(true);
  const prisma = inTrace(tid).filter((s) => s.name.startsWith('prisma:') && below(s, op));
  expect(prisma.length).toBeGreaterThan(0);
});

it('blob store calls, index jobs and embedding calls are spans', async () => {
  const tid = traceId();
  const v = await uploadVolume(gw, ORG, { indexing_mode: 'manual' });
  const res = await upload(gw, v.upload('/f.txt'), { data: Buffer.from('some text to keep') }, {}, tracedAs(tid));
  expect(res.status).toBe(201);
  const put = await waitFor(async () => inTrace(tid).find((s) => s.name === 'blob put'));
  expect(put.attributes).toMatchObject({ 'blob.operation': 'put', 'blob.store': 'local' });

  const auto = await newVolume(gw, ORG, { indexing_mode: 'auto', embedding_model_id: 'openai:fake-embed' });
  expect((await gw.call('PUT', auto.entry('/e.md'), { content_text: 'embed me please' })).status).toBe(201);
  const embed = await waitFor(async () => spans().find((s) => s.name === 'embed openai:fake-embed'), 30_000);
  expect(embed.attributes).toMatchObject({ 'embedding.model': 'openai:fake-embed' });
  // The job's span ends after the embedding's (when the job is settled).
  const job = await waitFor(async () => inTrace(embed.spanContext().traceId).find((s) => s.name === 'job index_entry'));
  expect(below(embed, job)).toBe(true);
});

it('a search statement (sent past Prisma, in one round trip) is a span below its request', async () => {
  const tid = traceId();
  const v = await newVolume(gw, ORG, { indexing_mode: 'manual' });
  const res = await call(gw.url, 'POST', `${v.volumeUrl}/search`, { query: 'anything at all', mode: 'keyword' }, tracedAs(tid));
  expect(res.status).toBe(200);
  const server = await waitFor(async () => inTrace(tid).find((s) => s.name.startsWith('POST /v1/')));
  const search = await waitFor(async () => inTrace(tid).find((s) => s.name === 'db.search'));
  expect(search.attributes).toMatchObject({ 'db.system': 'postgresql', 'search.mode': 'keyword', 'search.volumes': 1 });
  expect(below(search, server)).toBe(true);
});
