import { z } from 'zod';
import type { Entry } from '../../generated/prisma/client.js';
import { requireWritable } from '../access/entry-access.js';
import type { Principal } from '../access/principal.js';
import type { WriteGuard } from '../locks/locks.js';
import { ValidationError } from '../shared/errors.js';
import { normaliseEntryPath } from '../shared/paths.js';
import type { Loc, VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { afterWrite, type BatchItem, commitEntries } from './commit.js';
import { jsonOrTextEntry, openVolume } from './entries.js';
import { WriteEntryInput, type WriterInfo } from './rules.js';

// Batch writes: many JSON/text entries of one volume in one request and one transaction, for
// ingestion (an app loading a folder of notes, an agent saving its state). Each entry is checked as
// a single write is; the batch is written whole or not at all.

/** Most entries one batch writes. */
export const MAX_BATCH_ENTRIES = 100;
/** Most bytes of content (JSON serialised, plus text) one batch writes. */
export const MAX_BATCH_BYTES = 16 * 1024 * 1024;

/** What each entry of a batch states beside its body (the body is a PUT body, `WriteEntryInput`). */
const BatchEntryFields = z.object({
  path: z.string().min(1).max(1100).describe('Where to write the entry (normalised as a PUT path)'),
  expected_version: z.number().int().min(1).optional().describe('Write only if the entry is at this version (CONFLICT otherwise)'),
  create_only: z.boolean().optional().describe('Write only if nothing lives at the path (CONFLICT otherwise)'),
});

/** The body of a batch write (its OpenAPI schema too). Items are also validated as PUT bodies. */
export const WriteEntriesInput = z.object({
  entries: z
    .array(z.looseObject(BatchEntryFields.shape).describe('A PUT body (content, content_text, tags, metadata…) with its path'))
    .min(1)
    .max(MAX_BATCH_ENTRIES)
    .describe(`1 to ${MAX_BATCH_ENTRIES} entries, written in order, all or none`),
});
export type WriteEntriesInput = z.input<typeof WriteEntriesInput>;

/** What a batch write did: its entries in the order given, and how many it created and replaced. */
export interface BatchWritten {
  entries: Entry[];
  created: number;
  updated: number;
}

/**
 * Writes up to MAX_BATCH_ENTRIES JSON/text entries to one volume atomically. Every entry is
 * validated first (errors name `entries[i]` and the field), paths must be distinct, and each entry
 * is held to what a single write is: the caller's write access to its path, its own preconditions
 * (`expected_version`, `create_only`), the lock guard the caller states for the whole batch, and the
 * volume's quotas counting the batch's earlier entries. Subscribers hear of each entry after commit.
 * Returns the entries in the order given, and how many the batch created and how many it replaced.
 * @throws ValidationError, NotFoundError, ForbiddenError, ConflictError, LockedError, QuotaExceededError
 */
export async function writeEntries(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  raw: unknown,
  opts: WriteGuard & WriterInfo = {},
  loc: Loc = ['body'],
): Promise<BatchWritten> {
  const { access } = await openVolume(rt, p, route, 'write');
  const { entries } = parseInput(WriteEntriesInput, raw, loc);
  const guard: WriteGuard = { ...(opts.lockId ? { lockId: opts.lockId } : {}), ...(opts.fencing ? { fencing: opts.fencing } : {}) };
  const seen = new Map<string, number>();
  let bytes = 0n;
  const items: BatchItem[] = entries.map((item, i) => {
    const at: Loc = [...loc, 'entries', i];
    const fields = parseInput(BatchEntryFields, item, at);
    const path = normaliseEntryPath(fields.path, [...at, 'path']);
    const first = seen.get(path);
    if (first !== undefined) {
      throw ValidationError.field([...at, 'path'], `${path} is also entries[${first}]: a batch writes each path once`, fields.path);
    }
    seen.set(path, i);
    requireWritable(access, path);
    const data = jsonOrTextEntry(p, parseInput(WriteEntryInput, item, at), opts);
    bytes += data.sizeBytes;
    return {
      path,
      data,
      pre: {
        ...(fields.expected_version !== undefined ? { ifMatch: fields.expected_version } : {}),
        ifNoneMatch: fields.create_only ?? false,
      },
    };
  });
  if (bytes > BigInt(MAX_BATCH_BYTES)) {
    throw ValidationError.field([...loc, 'entries'], `A batch holds at most ${MAX_BATCH_BYTES} bytes of content`, null, 'too_big');
  }
  const results = await commitEntries(rt, route.volumeId, items, guard);
  for (const result of results) await afterWrite(rt, route, result);
  const created = results.filter((r) => r.created).length;
  return { entries: results.map((r) => r.entry), created, updated: results.length - created };
}
