import http from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** The admin key test gateways are started with, and the credentials these helpers send unless told otherwise. */
export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

/** A gateway to call: its base URL, or anything with a `url` (and the `key` to send by default). */
export type HttpTarget = string | { url: string; key?: string };

export interface HttpResponse {
  status: number;
  /** The parsed JSON, or the text when the answer is not JSON. */
  body: any;
  headers: Headers;
}

/** A response read with node:http. */
export interface RawResponse {
  status: number;
  body: any;
  headers: http.IncomingHttpHeaders;
}

const baseUrlOf = (target: HttpTarget) => (typeof target === 'string' ? target : target.url);

/** `key` when given (null: none), else the target's own key, else ADMIN_KEY. */
function bearer(target: HttpTarget, key: string | null | undefined): Record<string, string> {
  const chosen = key !== undefined ? key : ((typeof target === 'string' ? undefined : target.key) ?? ADMIN_KEY);
  return chosen ? { authorization: `Bearer ${chosen}` } : {};
}

function parseBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text; // not JSON: keep the text
  }
}

/** fetch against a gateway: `body` goes as JSON (a string as it is), the answer comes back parsed. */
export async function call(
  target: HttpTarget,
  method: string,
  route: string,
  body?: unknown,
  opts: { key?: string | null; headers?: Record<string, string> } = {},
): Promise<HttpResponse> {
  const headers: Record<string, string> = bearer(target, opts.key);
  let payload: string | undefined;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(baseUrlOf(target) + route, { method, headers: { ...headers, ...opts.headers }, body: payload });
  return { status: res.status, body: parseBody(await res.text()), headers: res.headers };
}

/**
 * An HTTP request with the path sent byte for byte (fetch would resolve `..` and `%2e%2e` itself,
 * so path-rule tests could never reach the gateway) and any extra headers.
 */
export function request(
  target: HttpTarget,
  method: string,
  route: string,
  opts: { body?: unknown; key?: string | null; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrlOf(target));
  const headers: Record<string, string> = { ...opts.headers, ...bearer(target, opts.key) };
  let payload: string | undefined;
  if (opts.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    payload = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, method, path: route, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body: parseBody(Buffer.concat(chunks).toString('utf8')), headers: res.headers });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * Streams `body` to the gateway with node:http (backpressure respected: never more than the socket's
 * buffers in flight). A response that arrives before the body is fully sent (413, 422) is what the
 * caller gets; the rest of the body is then abandoned.
 */
export function streamRequest(
  target: HttpTarget,
  method: string,
  route: string,
  body: { contentType: string; length?: number | undefined; stream: () => Readable },
  headers: Record<string, string> = {},
  key?: string | null,
): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrlOf(target));
  const h: Record<string, string> = { 'content-type': body.contentType, ...headers, ...bearer(target, key) };
  if (body.length !== undefined) h['content-length'] = String(body.length);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request({ hostname, port, method, path: route, headers: h, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body: parseBody(Buffer.concat(chunks).toString('utf8')), headers: res.headers });
        req.destroy();
      });
    });
    const source = body.stream();
    let failure: Error | undefined;
    pipeline(source, req).catch((err) => {
      failure ??= err;
      source.destroy();
    });
    // The server may answer early (413, 422) and close while the body is still going out: only a
    // request that ends without any answer is a failure.
    req.on('error', (err) => {
      failure ??= err;
    });
    req.on('close', () => {
      if (!answered) reject(failure ?? new Error('connection closed without a response'));
    });
  });
}
