import type { Readable } from 'node:stream';
import { createGraphQLError, type Plugin } from 'graphql-yoga';
import { NotMultipartError, nodeReadable, readMultipart } from '../http/multipart.js';

/**
 * A file of a GraphQL multipart request (graphql-multipart-request-spec), handed to resolvers
 * while its bytes are still arriving: `stream()` resolves when its part begins and yields the part
 * itself, so an upload flows from the socket to the blob store without being held in memory.
 */
export class StreamingUpload {
  filename: string | undefined;
  mimeType: string | undefined;
  private readonly ready: Promise<Readable>;
  private settle!: { resolve: (s: Readable) => void; reject: (e: Error) => void };
  constructor(readonly field: string) {
    this.ready = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.ready.catch(() => {});
  }
  /** @internal set by the parser when the part arrives */
  arrive(stream: Readable, filename: string | undefined, mimeType: string | undefined): void {
    this.filename = filename;
    this.mimeType = mimeType;
    this.settle.resolve(stream);
  }
  /** @internal */
  fail(err: Error): void {
    this.settle.reject(err);
  }
  stream(): Promise<Readable> {
    return this.ready;
  }
}

/** A value the `File` scalar accepts: a streaming part, or a web File (yoga's own parser, tests). */
export type UploadValue = StreamingUpload | File;

/** Node stream, name and type of either kind of upload. */
export async function openUpload(
  value: UploadValue,
): Promise<{ stream: Readable; filename: string | undefined; mimeType: string | undefined }> {
  if (value instanceof StreamingUpload) {
    const stream = await value.stream();
    return { stream, filename: value.filename, mimeType: value.mimeType };
  }
  return {
    stream: nodeReadable(value.stream() as unknown as AsyncIterable<Uint8Array>),
    filename: value.name,
    mimeType: value.type || undefined,
  };
}

function setPath(target: Record<string, unknown>, keyPath: string, value: unknown): void {
  const keys = keyPath.split('.');
  let current: Record<string, unknown> = target;
  keys.forEach((key, i) => {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype') return;
    if (i === keys.length - 1) current[key] = value;
    else {
      if (typeof current[key] !== 'object' || current[key] === null) current[key] = {};
      current = current[key] as Record<string, unknown>;
    }
  });
}

const MULTIPART = 'multipart/form-data';
const isMultipart = (request: Request) => request.headers.get('content-type')?.toLowerCase().startsWith(MULTIPART) ?? false;

const tooLarge = (limit: number) =>
  createGraphQLError(`Request body too large (limit ${limit} bytes)`, {
    extensions: { http: { status: 413 }, code: 'REQUEST_ENTITY_TOO_LARGE' },
  });

/**
 * Yoga's request-size limit (`maxRequestBodySize`, 25 MB by default) for every request but a
 * multipart upload, whose files are bounded one by one by MAX_UPLOAD_BYTES as they stream to the
 * blob store (yoga's own limit would refuse any upload over 25 MB). Use with
 * `maxRequestBodySize: false`, after the request parsers (any user plugin position is).
 */
export function useRequestBodyLimit(limit: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      if (isMultipart(request)) return;
      const contentLength = request.headers.get('content-length');
      if (contentLength != null) {
        if (!/^\d+$/.test(contentLength)) {
          throw createGraphQLError('Content-Length header is invalid.', { extensions: { http: { status: 400 }, code: 'BAD_REQUEST' } });
        }
        if (Number(contentLength) > limit) throw tooLarge(limit);
      }
      if (!requestParser || !request.body) return;
      const parse = requestParser;
      // No or a wrong Content-Length (chunked): count the bytes as they are read, as yoga does (a
      // TransformStream of the body's own kind; erroring it lets yoga still answer 413).
      setRequestParser((req) => {
        const body = req.body as ReadableStream<Uint8Array>;
        const Transform = body instanceof ReadableStream ? globalThis.TransformStream : fetchAPI.TransformStream;
        let read = 0;
        const limited = body.pipeThrough(
          new Transform<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              read += chunk.byteLength;
              if (read > limit) controller.error(tooLarge(limit));
              else controller.enqueue(chunk);
            },
          }),
        );
        return parse(
          new fetchAPI.Request(req.url, {
            method: req.method,
            headers: req.headers,
            signal: req.signal,
            body: limited,
            duplex: 'half',
          } as RequestInit),
        );
      });
    },
  };
}

const bad = (message: string) => createGraphQLError(message, { extensions: { http: { status: 400 }, code: 'BAD_REQUEST' } });

/**
 * Replaces yoga's multipart parser (which buffers every file in memory) with a streaming one. The
 * spec orders parts `operations`, `map`, then files, so the operation can start as soon as the first
 * file part begins.
 */
export function useStreamingUploads(): Plugin {
  return {
    onRequestParse({ request, setRequestParser }) {
      if (request.method !== 'POST' || !isMultipart(request)) return;
      setRequestParser(
        (req) =>
          new Promise((resolve, reject) => {
            if (!req.body) {
              reject(bad('Empty multipart request'));
              return;
            }
            let operations: Record<string, unknown> | undefined;
            const uploads = new Map<string, StreamingUpload>();
            let started = false;
            const start = () => {
              if (started) return;
              started = true;
              if (!operations) reject(bad('Missing multipart form field "operations"'));
              else resolve(operations as never);
            };
            const body = nodeReadable(req.body as unknown as AsyncIterable<Uint8Array>);
            try {
              readMultipart(
                req.headers.get('content-type') ?? '',
                body,
                { fieldSize: 1024 * 1024, fields: 10 },
                {
                  field: (name, value) => {
                    try {
                      if (name === 'operations') operations = JSON.parse(value);
                      else if (name === 'map') {
                        if (!operations) throw new Error('"operations" must come before "map"');
                        const map = JSON.parse(value) as Record<string, string[]>;
                        for (const [field, paths] of Object.entries(map)) {
                          const upload = new StreamingUpload(field);
                          uploads.set(field, upload);
                          for (const p of paths) setPath(operations, p, upload);
                        }
                      }
                    } catch (err) {
                      reject(bad(`Invalid multipart field "${name}": ${(err as Error).message}`));
                      throw err; // stops the parse
                    }
                  },
                  file: (name, part) => {
                    const upload = uploads.get(name);
                    if (!upload) return false;
                    upload.arrive(part.stream, part.filename, part.mimeType);
                    start();
                    return true;
                  },
                  close: () => {
                    for (const u of uploads.values()) u.fail(new Error(`file part "${u.field}" never arrived`));
                    start();
                  },
                  error: (err) => {
                    for (const u of uploads.values()) u.fail(err);
                    if (!started) reject(bad(`Invalid multipart request: ${err.message}`));
                  },
                },
              );
            } catch (err) {
              if (!(err instanceof NotMultipartError)) throw err;
              reject(bad(`Invalid multipart request: ${err.message}`));
            }
          }),
      );
    },
  };
}
