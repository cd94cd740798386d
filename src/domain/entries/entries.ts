import type { z } from 'zod';
import type { Entry, Volume } from '../../generated/prisma/client.js';
import { Prisma } from '../../generated/prisma/client.js';
import { enterOrg } from '../access/authenticate.js';
import { findVisibleVolume } from '../access/authorize.js';
import { type EntryAccess, entryAccess, requireReadable, requireWritable } from '../access/entry-access.js';
import type { Principal } from '../access/principal.js';
import { checkWriteGuard, type WriteGuard } from '../locks/locks.js';
import { NotFoundError } from '../shared/errors.js';
import { liveEntries } from '../shared/live-entries.js';
import { normaliseEntryPath } from '../shared/paths.js';
import type { Loc, VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import {
  adjustUsage,
  afterWrite,
  bucketOf,
  commitEntry,
  describedBy,
  discardBlobs,
  type EntryData,
  lockVolume,
  publish,
} from './commit.js';
import { checkPreconditions, type EntryKind, isExpired, type WriteConditions, WriteEntryInput, type WriterInfo } from './rules.js';

/** Resolves the volume (visible to the principal) and the principal's access to its entries. */
export async function openVolume(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  need: 'read' | 'write',
): Promise<{ volume: Volume; access: EntryAccess }> {
  await enterOrg(rt, p, route.orgId);
  const volume = await findVisibleVolume(rt, p, route);
  return { volume, access: await entryAccess(rt, p, volume.id, need) };
}

/**
 * Creates or replaces a JSON/text entry at `rawPath`.
 * @throws ValidationError (path or body), NotFoundError, ForbiddenError, ConflictError, QuotaExceededError
 */
export async function writeEntry(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  rawPath: string,
  raw: unknown,
  opts: WriteConditions & WriterInfo = {},
  loc: { path: Loc; body: Loc } = { path: ['path', 'path'], body: ['body'] },
): Promise<{ entry: Entry; created: boolean }> {
  const { access } = await openVolume(rt, p, route, 'write');
  const path = normaliseEntryPath(rawPath, loc.path);
  requireWritable(access, path);
  const input = parseInput(WriteEntryInput, raw, loc.body);
  const result = await commitEntry(rt, route.volumeId, path, jsonOrTextEntry(p, input, opts), opts);
  await afterWrite(rt, route, result);
  return { entry: result.entry, created: result.created };
}

/** What a JSON/text write stores: its kind (json by default when `content` is given), body, size and writer. */
export function jsonOrTextEntry(p: Principal, input: z.output<typeof WriteEntryInput>, opts: WriterInfo): EntryData {
  const kind: EntryKind = input.content_type ?? (input.content !== undefined ? 'json' : 'text');
  const content = input.content === undefined || input.content === null ? Prisma.JsonNull : (input.content as Prisma.InputJsonValue);
  const contentText = input.content_text ?? null;
  const sizeBytes = BigInt(
    (input.content !== undefined ? Buffer.byteLength(JSON.stringify(input.content)) : 0) +
      (contentText ? Buffer.byteLength(contentText) : 0),
  );
  return {
    contentType: kind,
    content,
    contentText,
    mimeType: input.mime_type ?? (kind === 'json' ? 'application/json' : 'text/plain'),
    sizeBytes,
    blobKey: null,
    sha256: null,
    ...describedBy(p, input, opts),
  };
}

/** Reads a live entry. @throws ValidationError (path), NotFoundError (absent, expired or not readable), ForbiddenError */
export async function getEntry(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  rawPath: string,
  pathLoc: Loc = ['path', 'path'],
): Promise<Entry> {
  const { access } = await openVolume(rt, p, route, 'read');
  const path = normaliseEntryPath(rawPath, pathLoc);
  requireReadable(access, path);
  const entry = await rt.db.entry.findFirst({ where: { ...liveEntries(route.volumeId), path } });
  if (!entry) throw new NotFoundError('entry', path);
  return entry;
}

/**
 * Deletes a live entry (and, after commit, its object).
 * @throws ValidationError, NotFoundError, ForbiddenError, ConflictError (If-Match)
 */
export async function deleteEntry(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  rawPath: string,
  pre: Pick<WriteConditions, 'ifMatch' | 'lockId' | 'fencing'> = {},
  pathLoc: Loc = ['path', 'path'],
): Promise<Entry> {
  const { access } = await openVolume(rt, p, route, 'write');
  const path = normaliseEntryPath(rawPath, pathLoc);
  requireWritable(access, path);
  const deleted = await rt.db.$transaction(
    async (tx) => {
      await lockVolume(tx, route.volumeId);
      await checkWriteGuard(tx, route.volumeId, path, pre);
      const entry = await tx.entry.findUnique({ where: { volumeId_path: { volumeId: route.volumeId, path } } });
      if (!entry || isExpired(entry)) throw new NotFoundError('entry', path);
      checkPreconditions(entry, pre, path);
      await tx.entry.delete({ where: { id: entry.id } });
      await adjustUsage(tx, route.volumeId, -entry.sizeBytes, -1);
      return entry;
    },
    { timeout: 20_000, maxWait: 20_000 },
  );
  if (deleted.blobKey) await discardBlobs(rt, await bucketOf(rt, route.workspaceId), [deleted.blobKey]);
  publish(rt, { volumeId: route.volumeId, entryId: deleted.id, path, change: 'deleted', version: null, previousPath: null });
  return deleted;
}

/**
 * Renames an entry within its volume atomically. The target must be free unless `overwrite`, in
 * which case the entry there is replaced (and its object removed after commit).
 * @throws ValidationError, NotFoundError, ForbiddenError, ConflictError (target exists, If-Match)
 */
export async function moveEntry(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  rawFrom: string,
  rawTo: string,
  opts: { overwrite?: boolean; ifMatch?: number | '*' | undefined } & WriteGuard = {},
  loc: { from: Loc; to: Loc } = { from: ['from'], to: ['to'] },
): Promise<Entry> {
  const { access } = await openVolume(rt, p, route, 'write');
  const from = normaliseEntryPath(rawFrom, loc.from);
  const to = normaliseEntryPath(rawTo, loc.to);
  requireWritable(access, from);
  requireWritable(access, to);
  const { entry, replaced } = await rt.db.$transaction(
    async (tx) => {
      await lockVolume(tx, route.volumeId);
      await checkWriteGuard(tx, route.volumeId, from, opts);
      await checkWriteGuard(tx, route.volumeId, to, opts);
      const source = await tx.entry.findUnique({ where: { volumeId_path: { volumeId: route.volumeId, path: from } } });
      if (!source || isExpired(source)) throw new NotFoundError('entry', from);
      checkPreconditions(source, { ifMatch: opts.ifMatch }, from);
      if (from === to) return { entry: source, replaced: null };
      const target = await tx.entry.findUnique({ where: { volumeId_path: { volumeId: route.volumeId, path: to } } });
      if (target && !isExpired(target) && !opts.overwrite) {
        checkPreconditions(target, { ifNoneMatch: true }, to);
      }
      if (target) {
        await tx.entry.delete({ where: { id: target.id } });
        await adjustUsage(tx, route.volumeId, -target.sizeBytes, -1);
      }
      const moved = await tx.entry.update({ where: { id: source.id }, data: { path: to, version: { increment: 1 } } });
      return { entry: moved, replaced: target };
    },
    { timeout: 20_000, maxWait: 20_000 },
  );
  if (replaced?.blobKey) await discardBlobs(rt, await bucketOf(rt, route.workspaceId), [replaced.blobKey]);
  if (from !== to) {
    if (replaced && !isExpired(replaced)) {
      publish(rt, { volumeId: route.volumeId, entryId: replaced.id, path: to, change: 'deleted', version: null, previousPath: null });
    }
    publish(rt, { volumeId: route.volumeId, entryId: entry.id, path: to, change: 'moved', version: entry.version, previousPath: from });
  }
  return entry;
}
