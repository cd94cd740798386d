import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';

// Cross-origin access for browsers (CORS_ORIGINS) on the REST API, the peer dialects and the blob
// routes. Off unless configured: the API authenticates with headers, never cookies, so allowing an
// origin lets its pages call the API with a key they hold, and nothing more. A preflight is answered
// here, before any authentication (browsers send it without credentials).

/** Request headers the REST layer reads (src/rest, src/http): credentials, preconditions, locks, tus. */
const ALLOWED_HEADERS = [
  'Authorization',
  'X-API-Key',
  'Content-Type',
  'If-Match',
  'If-None-Match',
  'Range',
  'X-Lock-Id',
  'X-Fencing-Token',
  'X-Lock-Partition',
  'X-Execution-Id',
  'X-Request-Id',
  'X-Org-Id',
  'Tus-Resumable',
  'Upload-Length',
  'Upload-Offset',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'X-HTTP-Method-Override',
];

/** Response headers a script may read: versions, paging, retries, request ids, downloads and tus state. */
const EXPOSED_HEADERS = [
  'ETag',
  'Location',
  'Retry-After',
  'X-Request-Id',
  'X-Total-Count',
  'X-Entry-Id',
  'Content-Disposition',
  'Content-Range',
  'Accept-Ranges',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Expires',
  'Upload-Metadata',
  'Upload-Defer-Length',
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
];

/** The CORS middleware for `origins` (['*']: any origin), or undefined when there are none. */
export function corsFor(origins: string[]): MiddlewareHandler | undefined {
  if (origins.length === 0) return undefined;
  return cors({
    origin: origins.includes('*') ? '*' : origins,
    allowMethods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    allowHeaders: ALLOWED_HEADERS,
    exposeHeaders: EXPOSED_HEADERS,
    maxAge: 600,
  });
}
