import { Readable } from 'node:stream';
import busboy from 'busboy';
import { createGraphQLError, type Plugin } from 'graphql-yoga';

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
  return { stream: Readable.fromWeb(value.stream() as never), filename: value.name, mimeType: value.type || undefined };
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

const bad = (message: string) => createGraphQLError(message, { extensions: { http: { status: 400 }, code: 'BAD_REQUEST' } });

/**
 * Replaces yoga's multipart parser (which buffers every file in memory) with a streaming one. The
 * spec orders parts `operations`, `map`, then files, so the operation can start as soon as the first
 * file part begins.
 */
export function useStreamingUploads(): Plugin {
  return {
    onRequestParse({ request, setRequestParser }) {
      if (request.method !== 'POST' || !request.headers.get('content-type')?.toLowerCase().startsWith('multipart/form-data')) return;
      setRequestParser(
        (req) =>
          new Promise((resolve, reject) => {
            let parser: busboy.Busboy;
            try {
              parser = busboy({
                headers: { 'content-type': req.headers.get('content-type') ?? '' },
                // File names arrive as raw UTF-8, which busboy would read as latin1.
                defParamCharset: 'utf8',
                limits: { fieldSize: 1024 * 1024, fields: 10 },
              });
            } catch (err) {
              reject(bad(`Invalid multipart request: ${(err as Error).message}`));
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
            parser.on('field', (name, value) => {
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
                parser.destroy();
                reject(bad(`Invalid multipart field "${name}": ${(err as Error).message}`));
              }
            });
            parser.on('file', (name, stream, info) => {
              const upload = uploads.get(name);
              if (!upload) {
                stream.resume();
                return;
              }
              upload.arrive(stream, info.filename, info.mimeType);
              start();
            });
            parser.on('close', () => {
              for (const u of uploads.values()) u.fail(new Error(`file part "${u.field}" never arrived`));
              start();
            });
            parser.on('error', (err) => {
              for (const u of uploads.values()) u.fail(err as Error);
              if (!started) reject(bad(`Invalid multipart request: ${(err as Error).message}`));
            });
            if (!req.body) {
              reject(bad('Empty multipart request'));
              return;
            }
            // .pipe() forwards neither errors nor a body cut off mid-file: without this, an upload
            // whose client went away would wait forever with its object half written.
            const source = Readable.fromWeb(req.body as never);
            source.on('error', (err) => parser.destroy(err));
            source.on('close', () => {
              if (!source.readableEnded) parser.destroy(new Error('the request body ended early (client disconnected)'));
            });
            source.pipe(parser);
          }),
      );
    },
  };
}
