import { z } from 'zod';
import type { Entry } from '../../generated/prisma/client.js';
import type { WriteGuard } from '../locks/locks.js';
import { ConflictError, QuotaExceededError } from '../shared/errors.js';
import { ShortId, Tags } from '../shared/fields.js';

/** Entry kinds: JSON `content`, plain `content_text`, or an uploaded file (bytes in the blob store). */
export const ENTRY_KINDS = ['json', 'text', 'file'] as const;
export type EntryKind = (typeof ENTRY_KINDS)[number];

export const MAX_TEXT_BYTES = 8 * 1024 * 1024;
/** An entry's JSON `content`, serialised: the same bound for REST and GraphQL (whose body limits are both above it). */
export const MAX_JSON_BYTES = 8 * 1024 * 1024;
export const MAX_METADATA_BYTES = 64 * 1024;
/** Text kept from an uploaded text-like file for indexing; the file itself is stored whole. */
export const MAX_EXTRACTED_TEXT_BYTES = 1024 * 1024;
export const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;

const bytes = (s: string) => Buffer.byteLength(s);

export const MimeType = z
  .string()
  .trim()
  .max(255)
  .regex(/^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/, 'a media type such as text/markdown');

// Bodies reach these schemas already parsed from JSON (REST) or as the JSON scalar (GraphQL), so any
// value is JSON; z.unknown() rather than the recursive z.json() keeps the OpenAPI generator finite.
export const Metadata = z
  .record(z.string().max(255), z.unknown())
  .refine((m) => bytes(JSON.stringify(m)) <= MAX_METADATA_BYTES, `metadata must be at most ${MAX_METADATA_BYTES} bytes as JSON`);

export const TtlSeconds = z.number().int().min(1).max(MAX_TTL_SECONDS);

/** The fields every write shares (JSON/text writes and file uploads). */
const CommonEntryFields = {
  mime_type: MimeType.nullable().optional(),
  schema_id: ShortId.nullable().optional(),
  tags: Tags.default([]),
  metadata: Metadata.default({}),
  ttl_seconds: TtlSeconds.nullable().optional(),
  execution_id: ShortId.optional().describe('The writing execution; the X-Execution-Id header takes precedence'),
};

/** PUT body: JSON `content` and/or `content_text`. */
export const WriteEntryInput = z
  .object({
    content: z
      .unknown()
      .refine(
        (v) => v === undefined || bytes(JSON.stringify(v) ?? '') <= MAX_JSON_BYTES,
        `content must be at most ${MAX_JSON_BYTES} bytes as JSON`,
      )
      .describe('Any JSON value')
      .optional(),
    content_text: z
      .string()
      .refine((t) => bytes(t) <= MAX_TEXT_BYTES, `content_text must be at most ${MAX_TEXT_BYTES} bytes`)
      .nullable()
      .optional(),
    content_type: z.enum(['json', 'text']).optional().describe('Default json when content is given, else text'),
    ...CommonEntryFields,
  })
  .superRefine((v, ctx) => {
    if (v.content === undefined && (v.content_text === undefined || v.content_text === null)) {
      ctx.addIssue({ code: 'custom', path: ['content'], message: 'content or content_text is required', input: undefined });
    }
    if (v.content_type === 'json' && v.content === undefined) {
      ctx.addIssue({ code: 'custom', path: ['content'], message: 'content is required when content_type is json', input: undefined });
    }
    if (v.content_type === 'text' && (v.content_text === undefined || v.content_text === null)) {
      ctx.addIssue({
        code: 'custom',
        path: ['content_text'],
        message: 'content_text is required when content_type is text',
        input: undefined,
      });
    }
    const size = bytes(JSON.stringify(v.content ?? null));
    if (v.content !== undefined && size > MAX_TEXT_BYTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['content'],
        message: `content must be at most ${MAX_TEXT_BYTES} bytes as JSON`,
        input: undefined,
      });
    }
  });
export type WriteEntryInput = z.input<typeof WriteEntryInput>;

/** Multipart fields that may accompany an uploaded file. */
export const UploadFieldsInput = z.object(CommonEntryFields);
export type UploadFieldsInput = z.input<typeof UploadFieldsInput>;

/** Preconditions a writer may state: the version it read, or that the path must be new. */
export interface Preconditions {
  /** Write only if the entry exists at this version (If-Match / expectedVersion). `'*'`: only if it exists. */
  ifMatch?: number | '*' | undefined;
  /** Write only if no live entry exists at the path (If-None-Match: *). */
  ifNoneMatch?: boolean | undefined;
}

/** @throws ConflictError (409) naming the precondition that failed and the current version */
export function checkPreconditions(current: Pick<Entry, 'version'> | null, pre: Preconditions, path: string): void {
  if (pre.ifNoneMatch && current) {
    throw new ConflictError(`An entry already exists at ${path}`, {
      path,
      current_version: current.version,
      precondition: 'If-None-Match',
    });
  }
  if (pre.ifMatch === undefined) return;
  if (!current) {
    throw new ConflictError(`No entry exists at ${path} to match`, { path, current_version: null, precondition: 'If-Match' });
  }
  if (pre.ifMatch !== '*' && pre.ifMatch !== current.version) {
    throw new ConflictError(`Entry ${path} is at version ${current.version}, not ${pre.ifMatch}`, {
      path,
      current_version: current.version,
      expected_version: pre.ifMatch,
      precondition: 'If-Match',
    });
  }
}

/** Parses an If-Match header value: `"3"`, `W/"3"`, `3` or `*`. Returns undefined for absent, NaN-free. */
export function parseIfMatch(header: string | undefined | null): number | '*' | undefined | 'invalid' {
  if (header === undefined || header === null || header.trim() === '') return undefined;
  const value = header.trim();
  if (value === '*') return '*';
  const m = /^(?:W\/)?"?(\d{1,9})"?$/.exec(value);
  return m ? Number(m[1]) : 'invalid';
}

/** The ETag of an entry version (strong: a version names exactly one content). */
export const etagOf = (version: number) => `"${version}"`;

export interface VolumeUsage {
  max_size_bytes: bigint | null;
  max_file_count: number | null;
  used_bytes: bigint;
  entry_count: number;
}

/**
 * Refuses a change that would push a volume past a quota. Called with the volume row locked, so
 * the numbers are current and concurrent writers cannot both squeeze under the limit.
 * @throws QuotaExceededError naming the quota
 */
export function checkQuota(v: VolumeUsage, deltaBytes: bigint, deltaCount: number): void {
  if (deltaBytes > 0n && v.max_size_bytes !== null && v.used_bytes + deltaBytes > v.max_size_bytes) {
    throw new QuotaExceededError(`Volume quota max_size_bytes (${v.max_size_bytes}) would be exceeded`, {
      quota: 'max_size_bytes',
      limit: Number(v.max_size_bytes),
      used: Number(v.used_bytes),
      requested: Number(deltaBytes),
    });
  }
  if (deltaCount > 0 && v.max_file_count !== null && v.entry_count + deltaCount > v.max_file_count) {
    throw new QuotaExceededError(`Volume quota max_file_count (${v.max_file_count}) would be exceeded`, {
      quota: 'max_file_count',
      limit: v.max_file_count,
      used: v.entry_count,
    });
  }
}

export const isExpired = (e: Pick<Entry, 'expiresAt'>, now = new Date()) => e.expiresAt !== null && e.expiresAt <= now;

/** Everything a writer may state about a write: versions, and the lock or fencing token it holds. */
export type WriteConditions = Preconditions & WriteGuard;

/** Who wrote: the app comes from an app key (never from the request), the execution from the caller. */
export interface WriterInfo {
  executionId?: string | undefined;
}
