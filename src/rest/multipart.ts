import { Readable } from 'node:stream';
import busboy from 'busboy';
import type { Context } from 'hono';
import type { UploadedFile } from '../domain/entries/uploads.js';
import { ValidationError } from '../domain/shared/errors.js';

/** The multipart fields an upload may carry besides `file`, as the domain expects them. */
export type UploadFields = Record<string, unknown>;

/** Fields arrive as strings; tags and metadata are JSON (tags may also be comma-separated). */
function typedFields(raw: Record<string, string>): UploadFields {
  const out: UploadFields = {};
  for (const [name, value] of Object.entries(raw)) {
    if (name === 'tags') {
      const t = value.trim();
      out.tags = t.startsWith('[')
        ? safeJson(t, name)
        : t
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
    } else if (name === 'metadata') {
      out.metadata = safeJson(value, name);
    } else if (name === 'ttl_seconds') {
      out.ttl_seconds = /^\d+$/.test(value.trim()) ? Number(value) : value;
    } else if (['mime_type', 'schema_id', 'execution_id'].includes(name)) {
      out[name] = value;
    }
  }
  return out;
}

function safeJson(value: string, field: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    throw ValidationError.field(['body', field], `${field} must be JSON`, value, 'json_invalid');
  }
}

/**
 * Streams a `multipart/form-data` upload: resolves as soon as the `file` part starts, with its
 * byte stream (never buffered) and a promise of the other fields, which may come before or after it.
 * @throws ValidationError when the body is not multipart or has no `file` part
 */
export function readUpload(c: Context): Promise<{ file: UploadedFile; fields: Promise<UploadFields> }> {
  const contentType = c.req.header('content-type') ?? '';
  let parser: busboy.Busboy;
  try {
    // defParamCharset: browsers and fetch send file names as raw UTF-8, which busboy would read as latin1.
    parser = busboy({
      headers: { 'content-type': contentType },
      defParamCharset: 'utf8',
      limits: { files: 1, fields: 20, fieldSize: 256 * 1024 },
    });
  } catch {
    throw ValidationError.field(['body'], 'Request body must be multipart/form-data with a file part', contentType || null, 'content_type');
  }
  const incoming = (c.env as { incoming?: Readable } | undefined)?.incoming;
  const source = incoming ?? (c.req.raw.body ? Readable.fromWeb(c.req.raw.body as never) : Readable.from([]));
  return new Promise((resolve, reject) => {
    const raw: Record<string, string> = {};
    let started = false;
    const fields = new Promise<UploadFields>((res, rej) => {
      parser.on('close', () => {
        try {
          res(typedFields(raw));
        } catch (err) {
          rej(err);
        }
      });
      parser.on('error', rej);
    });
    fields.catch(() => {}); // observed by the caller once the file is stored
    parser.on('field', (name, value) => {
      raw[name] = value;
    });
    parser.on('file', (name, stream, info) => {
      if (name !== 'file' || started) {
        stream.resume();
        return;
      }
      started = true;
      resolve({ file: { stream, filename: info.filename, mimeType: info.mimeType }, fields });
    });
    parser.on('close', () => {
      if (!started) reject(ValidationError.field(['body', 'file'], 'Field required', null, 'missing'));
    });
    parser.on('error', (err) => {
      const error = ValidationError.field(['body'], `Malformed multipart body: ${(err as Error).message}`, null, 'multipart_invalid');
      if (!started) reject(error);
    });
    // .pipe() forwards neither the source's errors nor a client that went away mid-body: without
    // this, a cut-off upload would wait forever with its object half written.
    source.on('error', (err) => parser.destroy(err));
    source.on('close', () => {
      if (!source.readableEnded) parser.destroy(new Error('the request body ended early (client disconnected)'));
    });
    source.pipe(parser);
  });
}
