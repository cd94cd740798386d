import { Readable } from 'node:stream';
import { Hono } from 'hono';
import { BlobNotFoundError, BlobTooLargeError } from '../storage/blob-store.js';
import { contentDisposition } from '../storage/content-disposition.js';
import type { LocalBlobStore, OpenObject } from '../storage/local.js';
import { InvalidBlobKeyError } from '../storage/validate.js';
import { errorEnvelope } from './errors.js';

/**
 * Serves the local blob store's signed download URLs: `GET|HEAD /blobs/{bucket}/{key…}?expires&filename&type&sig`
 * (made by `LocalBlobStore.signedUrl`). Refuses tampered or expired URLs (403), answers a single
 * byte range (206, or 416 when unsatisfiable) and streams the file with bounded memory. Mount it on
 * the root app: `root.route('/', createDownloadRoutes(store))`.
 */
export function createDownloadRoutes(store: LocalBlobStore): Hono {
  const app = new Hono();
  app.get('/blobs/:bucket/*', async (c) => {
    const url = new URL(c.req.url);
    const target = parseTarget(url.pathname);
    const grant = target && store.verifyDownload(target.bucket, target.key, url.searchParams);
    if (!target || !grant) {
      return c.json(errorEnvelope('FORBIDDEN', 'Invalid or expired download URL', {}, 403), 403);
    }

    let obj: OpenObject;
    try {
      obj = await store.open(target.bucket, target.key);
    } catch (err) {
      if (err instanceof BlobNotFoundError || err instanceof InvalidBlobKeyError) {
        return c.json(
          errorEnvelope(
            'RESOURCE_NOT_FOUND',
            'The requested resource was not found',
            { resource_type: 'object', resource_id: target.key },
            404,
          ),
          404,
        );
      }
      throw err;
    }

    const headers: Record<string, string> = {
      'Accept-Ranges': 'bytes',
      'Content-Type': grant.contentType ?? obj.contentType ?? 'application/octet-stream',
      'Content-Disposition': contentDisposition(grant.filename),
      // User content under our origin: never sniffed into something executable.
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'private',
    };
    const range = parseRange(c.req.header('range'), obj.size);
    if (range === 'unsatisfiable') {
      await obj.close();
      return c.json(errorEnvelope('RANGE_NOT_SATISFIABLE', 'The requested range is not satisfiable', { size: obj.size }, 416), 416, {
        'Content-Range': `bytes */${obj.size}`,
        'Accept-Ranges': 'bytes',
      });
    }
    const status = range ? 206 : 200;
    headers['Content-Length'] = String(range ? range.end - range.start + 1 : obj.size);
    if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${obj.size}`;
    // Hono answers HEAD by running this GET handler and dropping the body unread, which would
    // leave the file open: HEAD never opens a stream.
    if (c.req.method === 'HEAD') {
      await obj.close();
      return c.body(null, status, headers);
    }
    return c.body(toWebStream(obj.read(range)), status, headers);
  });
  // Signed upload URLs (LocalBlobStore.signedPutUrl): exactly the signed size and type, once the
  // signature and expiry check out. The object becomes an entry only when its upload is completed.
  app.put('/blobs/:bucket/*', async (c) => {
    const url = new URL(c.req.url);
    const target = parseTarget(url.pathname);
    const grant = target && store.verifyUpload(target.bucket, target.key, url.searchParams);
    if (!target || !grant) return c.json(errorEnvelope('FORBIDDEN', 'Invalid or expired upload URL', {}, 403), 403);
    const length = c.req.header('content-length');
    if (length !== String(grant.size)) {
      return c.json(
        errorEnvelope('VALIDATION_FAILED', `Content-Length must be ${grant.size}`, { field: 'content-length', expected: grant.size }, 400),
        400,
      );
    }
    const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim();
    if (type !== grant.contentType.split(';')[0]?.trim()) {
      return c.json(
        errorEnvelope(
          'VALIDATION_FAILED',
          `Content-Type must be ${grant.contentType}`,
          { field: 'content-type', expected: grant.contentType },
          400,
        ),
        400,
      );
    }
    const body = c.req.raw.body ? Readable.fromWeb(c.req.raw.body as import('node:stream/web').ReadableStream) : Readable.from([]);
    try {
      const put = await store.put(target.bucket, target.key, body, { maxBytes: grant.size, contentType: grant.contentType });
      if (put.size !== grant.size) {
        await store.delete(target.bucket, target.key);
        return c.json(errorEnvelope('VALIDATION_FAILED', `The body must be ${grant.size} bytes`, { field: 'content-length' }, 400), 400);
      }
      return c.body(null, 200, { ETag: `"${put.sha256}"` });
    } catch (err) {
      if (err instanceof BlobTooLargeError) {
        return c.json(errorEnvelope('PAYLOAD_TOO_LARGE', `The body exceeds ${grant.size} bytes`, { max_bytes: grant.size }, 413), 413);
      }
      throw err;
    }
  });
  return app;
}

/** Bucket and key from the raw (still percent-encoded) path, each key segment decoded on its own. */
function parseTarget(pathname: string): { bucket: string; key: string } | undefined {
  const [bucket, ...segments] = pathname.slice('/blobs/'.length).split('/');
  if (!bucket || segments.length === 0) return undefined;
  try {
    return { bucket: decodeURIComponent(bucket), key: segments.map(decodeURIComponent).join('/') };
  } catch {
    return undefined; // malformed percent-encoding
  }
}

/**
 * One `Range: bytes=…` range (`a-b`, `a-`, `-n`) clamped to the object; undefined when there is
 * none or it is not one we serve (several ranges, other units, syntax errors: RFC 9110 lets a
 * server ignore those and answer 200 with the whole object).
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = header?.trim().match(/^bytes=(\d*)-(\d*)$/);
  if (!m) return undefined;
  const [, first = '', last = ''] = m;
  if (first === '') {
    if (last === '') return undefined;
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
}

/**
 * Pull-based: the next chunk is read from the file only once the response wants it (highWaterMark
 * 0), so a download holds about one chunk whatever the file's size; a client that goes away cancels
 * the stream, which closes the file.
 */
function toWebStream(body: Readable): ReadableStream<Uint8Array> {
  const chunks = body[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { value, done } = await chunks.next();
          if (done) controller.close();
          else controller.enqueue(value as Uint8Array);
        } catch (err) {
          controller.error(err);
        }
      },
      async cancel() {
        await chunks.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}
