import { Readable } from 'node:stream';
import busboy from 'busboy';

// The one multipart/form-data reader, under both REST uploads and GraphQL multipart requests: parts
// are handed over as they arrive (files as streams, never buffered), and a body cut off mid-way fails
// the parse instead of leaving a half-written object waiting forever.

export interface FilePart {
  stream: Readable;
  filename: string | undefined;
  mimeType: string | undefined;
}

export interface MultipartHandlers {
  /** A text field. Throwing stops the parse and is passed to `error`. */
  field(name: string, value: string): void;
  /** A file part: return false to skip it (its bytes are drained). */
  file(name: string, part: FilePart): boolean;
  /** The body ended and every part was seen. */
  close(): void;
  /** The body is not valid multipart, a limit was hit, a handler threw, or the client went away. */
  error(err: Error): void;
}

export interface MultipartLimits {
  files?: number;
  fields: number;
  fieldSize: number;
}

export class NotMultipartError extends Error {}

/**
 * Parses `body` as multipart/form-data, calling `on` part by part with backpressure kept.
 * @throws NotMultipartError (synchronously) when the content type is not multipart with a boundary
 */
export function readMultipart(contentType: string, body: Readable, limits: MultipartLimits, on: MultipartHandlers): void {
  let parser: busboy.Busboy;
  try {
    // defParamCharset: browsers and fetch send file names as raw UTF-8, which busboy would read as latin1.
    parser = busboy({ headers: { 'content-type': contentType }, defParamCharset: 'utf8', limits });
  } catch (err) {
    throw new NotMultipartError((err as Error).message);
  }
  parser.on('field', (name, value) => {
    try {
      on.field(name, value);
    } catch (err) {
      parser.destroy(err as Error);
    }
  });
  parser.on('file', (name, stream, info) => {
    if (!on.file(name, { stream, filename: info.filename, mimeType: info.mimeType })) stream.resume();
  });
  parser.on('close', () => on.close());
  parser.on('error', (err) => on.error(err as Error));
  // .pipe() forwards neither the source's errors nor a client that went away mid-body.
  body.on('error', (err) => parser.destroy(err));
  body.on('close', () => {
    if (!body.readableEnded) parser.destroy(new Error('the request body ended early (client disconnected)'));
  });
  body.pipe(parser);
}

/**
 * A request body as a Node stream of Buffers. Under the Node adapter a fetch body may be a
 * whatwg-node ponyfill stream, which `Readable.fromWeb` refuses; every kind is async-iterable,
 * pulled as the parser asks (backpressure kept).
 */
export function nodeReadable(body: AsyncIterable<Uint8Array> | null | undefined): Readable {
  if (!body) return Readable.from([]);
  return Readable.from(
    (async function* () {
      for await (const chunk of body) yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    })(),
    { objectMode: false },
  );
}
