import type { Readable } from 'node:stream';
import type { Context } from 'hono';
import type { UploadedFile } from '../domain/entries/uploads.js';
import { ValidationError } from '../domain/shared/errors.js';
import { NotMultipartError, nodeReadable, readMultipart } from '../http/multipart.js';

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
  const incoming = (c.env as { incoming?: Readable } | undefined)?.incoming;
  const body = incoming ?? nodeReadable(c.req.raw.body as AsyncIterable<Uint8Array> | null);
  return new Promise((resolve, reject) => {
    const raw: Record<string, string> = {};
    let started = false;
    let fieldsDone!: { resolve: (f: UploadFields) => void; reject: (e: Error) => void };
    const fields = new Promise<UploadFields>((resolve, reject) => {
      fieldsDone = { resolve, reject };
    });
    fields.catch(() => {}); // observed by the caller once the file is stored
    try {
      readMultipart(
        contentType,
        body,
        { files: 1, fields: 20, fieldSize: 256 * 1024 },
        {
          field: (name, value) => {
            raw[name] = value;
          },
          file: (name, part) => {
            if (name !== 'file' || started) return false;
            started = true;
            resolve({ file: part, fields });
            return true;
          },
          close: () => {
            try {
              fieldsDone.resolve(typedFields(raw));
            } catch (err) {
              fieldsDone.reject(err as Error);
            }
            if (!started) reject(ValidationError.field(['body', 'file'], 'Field required', null, 'missing'));
          },
          error: (err) => {
            fieldsDone.reject(err);
            if (!started) reject(ValidationError.field(['body'], `Malformed multipart body: ${err.message}`, null, 'multipart_invalid'));
          },
        },
      );
    } catch (err) {
      if (!(err instanceof NotMultipartError)) throw err;
      reject(
        ValidationError.field(['body'], 'Request body must be multipart/form-data with a file part', contentType || null, 'content_type'),
      );
    }
  });
}
