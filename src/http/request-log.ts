import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { tracer } from '../telemetry/tracing.js';

// One record per HTTP request, kept in AsyncLocalStorage for everything that runs on its behalf:
// its id (X-Request-Id, accepted from the client or made here, returned on every response), and
// what the transports learn while handling it (route template, caller, GraphQL operation). Every
// log line written inside a request carries its id (the logger's mixin), and when the response
// ends one JSON line records it. Never a secret: key ids, not keys; no bodies, no headers.

export interface RequestRecord {
  id: string;
  method: string;
  url: string;
  /** The route template (REST) or `/graphql`; unset: no route matched. */
  route?: string;
  orgId?: string;
  keyId?: string;
  appId?: string;
  /** GraphQL operation name, when the request named one. */
  operation?: string;
  /** The per-key limit that refused this request (429), if one did. */
  rateLimited?: string;
  /** GraphQL: the codes of the errors in the answer (extensions.code), if there were any. */
  errors?: string[];
  /** GraphQL: answered by one compiled statement (src/graphql/compiled/read.ts) rather than by resolvers. */
  compiled?: boolean;
}

const requests = new AsyncLocalStorage<RequestRecord>();

/** The request the current code runs for, if any (background work has none). */
export function currentRequest(): RequestRecord | undefined {
  return requests.getStore();
}

/** Records what a transport learnt about the current request (caller, route, operation). */
export function noteRequest(fields: Partial<Omit<RequestRecord, 'id' | 'method' | 'url'>>): void {
  const r = requests.getStore();
  if (r) Object.assign(r, fields);
}

/** Records the caller: a key by its id (never the key), the platform key as `platform`. */
export function noteCaller(p: { kind: string; orgId?: string; keyId?: string; appId?: string | null }, orgId?: string): void {
  if (p.kind !== 'key') noteRequest({ keyId: 'platform', ...(orgId ? { orgId } : {}) });
  else noteRequest({ orgId: p.orgId, keyId: p.keyId, ...(p.appId ? { appId: p.appId } : {}) });
}

/** Each socket's byte counts when its previous request ended (keep-alive sockets carry many). */
const counted = new WeakMap<Socket, { read: number; written: number }>();

/**
 * Bytes on the wire for the request that just ended on `socket`, headers included: the socket's
 * counts since its previous request ended. (Node has read the headers, and often a small body,
 * before the handler runs, so counting from the handler's start would miss them.)
 */
function wireBytes(socket: Socket): { bytes_in: number; bytes_out: number } {
  const before = counted.get(socket) ?? { read: 0, written: 0 };
  const now = { read: socket.bytesRead, written: socket.bytesWritten };
  counted.set(socket, now);
  return { bytes_in: now.read - before.read, bytes_out: now.written - before.written };
}

/** A client's X-Request-Id is kept when it is a sane token (≤ 128 visible ASCII characters), else replaced. */
const CLIENT_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * Wraps the server's request listener: assigns the request id (header in and out), runs the handler
 * inside the request's record, and writes the access line when the response finishes (or the
 * client goes away first).
 */
export function withRequestLog(
  log: Logger,
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  /** Called once per request when it ends, after its access line (metrics). */
  onEnd?: (record: RequestRecord, status: number, seconds: number) => void,
) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && CLIENT_ID.test(given) ? given : randomUUID();
    // Downstream (GraphQL context, REST handlers) reads the same id from the request.
    req.headers['x-request-id'] = id;
    res.setHeader('x-request-id', id);
    const record: RequestRecord = { id, method: req.method ?? 'GET', url: req.url ?? '/' };
    const started = performance.now();
    // The request's span (a no-op unless tracing is on), child of the caller's traceparent if any.
    // The path only: a query string may carry secrets (GraphiQL's ?key=).
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracer().startSpan(
      record.method,
      {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': record.method, 'url.path': record.url.split('?')[0] as string, 'http.request_id': id },
      },
      parent,
    );
    const traced = span.spanContext().traceFlags !== 0 ? { trace_id: span.spanContext().traceId } : {};
    const socket = req.socket;
    let logged = false;
    // Inside the request's record, so the line carries its request_id like every other line.
    const done = () =>
      requests.run(record, () => {
        if (logged) return;
        logged = true;
        const ms = performance.now() - started;
        log.info(
          {
            method: record.method,
            route: record.route ?? null,
            status: res.statusCode,
            duration_ms: Math.round(ms * 100) / 100,
            ...wireBytes(socket),
            org: record.orgId ?? null,
            key_id: record.keyId ?? null,
            app: record.appId ?? null,
            ...(record.operation ? { operation: record.operation } : {}),
            ...(record.rateLimited ? { rate_limited: record.rateLimited } : {}),
            ...(record.errors ? { errors: record.errors } : {}),
            ...(record.compiled ? { compiled: true } : {}),
            ...traced,
            ...(res.writableFinished ? {} : { aborted: true }),
          },
          'request',
        );
        onEnd?.(record, res.statusCode, ms / 1000);
        if (record.route) {
          span.updateName(`${record.method} ${record.route}`);
          span.setAttribute('http.route', record.route);
        }
        span.setAttribute('http.response.status_code', res.statusCode);
        if (record.operation) span.setAttribute('graphql.operation.name', record.operation);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        if (!res.writableFinished) span.setAttribute('http.aborted', true);
        span.end();
      });
    res.once('finish', done);
    res.once('close', done);
    context.with(trace.setSpan(parent, span), () => requests.run(record, () => handler(req, res)));
  };
}
