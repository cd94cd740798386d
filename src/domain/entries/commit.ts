import type { Tx } from '../../db/client.js';
import type { Entry, Prisma } from '../../generated/prisma/client.js';
import type { Principal } from '../access/principal.js';
import { checkWriteGuard, type WriteGuard, writeGuardOf } from '../locks/locks.js';
import { queueEntriesIndexing, queueEntryIndexing } from '../search/indexing.js';
import { isUniqueViolation, NotFoundError, QuotaExceededError } from '../shared/errors.js';
import type { EntryChangedEvent } from '../shared/events.js';
import type { VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { enterAsVolumeWriter, excludeVolumeWriters } from '../shared/volume-gate.js';
import type { Preconditions, WriteConditions, WriterInfo } from './rules.js';
import { checkPreconditions, checkQuota, type EntryKind, isExpired, type VolumeUsage } from './rules.js';

// The write path every entry change shares: the volume-row lock, guards, quotas, counters, and what
// happens after commit (objects removed, subscribers told).

/** Test seams: a fault injected between the object write and the row commit must leave nothing behind. */

/** The row content a write stores; counters and versions are the commit's business. */
export interface EntryData {
  contentType: EntryKind;
  content: Prisma.InputJsonValue | typeof Prisma.JsonNull;
  contentText: string | null;
  mimeType: string | null;
  sizeBytes: bigint;
  schemaId: string | null;
  blobKey: string | null;
  sha256: string | null;
  ttlSeconds: number | null;
  tags: string[];
  metadata: Prisma.InputJsonValue;
  writtenByAppId: string | null;
  writtenByExecutionId: string | null;
}

/**
 * The fields every write takes from the request and the caller: the writing app comes from an app
 * key (never from the body), the execution from the X-Execution-Id header, else the body.
 */
export function describedBy(
  p: Principal,
  f: {
    schema_id?: string | null | undefined;
    ttl_seconds?: number | null | undefined;
    tags: string[];
    metadata: Record<string, unknown>;
    execution_id?: string | undefined;
  },
  opts: WriterInfo,
): Pick<EntryData, 'schemaId' | 'ttlSeconds' | 'tags' | 'metadata' | 'writtenByAppId' | 'writtenByExecutionId'> {
  return {
    schemaId: f.schema_id ?? null,
    ttlSeconds: f.ttl_seconds ?? null,
    tags: f.tags,
    metadata: f.metadata as Prisma.InputJsonValue,
    writtenByAppId: p.kind === 'key' ? p.appId : null,
    writtenByExecutionId: opts.executionId ?? f.execution_id ?? null,
  };
}

/**
 * The volume row locked for a serialised write. `used_bytes` and `entry_count` here include the
 * bytes and files unfinished uploads hold (reserved_bytes, reserved_files), so a quota check
 * against them leaves their room alone.
 */
export async function lockVolume(tx: Tx, volumeId: string): Promise<VolumeUsage & { indexing_mode: 'auto' | 'manual' }> {
  await excludeVolumeWriters(tx, volumeId);
  const rows = await tx.$queryRaw<(VolumeUsage & { indexing_mode: 'auto' | 'manual' })[]>`
    SELECT max_size_bytes, max_file_count, used_bytes + reserved_bytes AS used_bytes, entry_count + reserved_files AS entry_count,
      indexing_mode::text AS indexing_mode
    FROM volumes WHERE id = ${volumeId} AND deleted_at IS NULL FOR UPDATE`;
  const row = rows[0];
  // Gone, or soft-deleted after the caller's visibility check: nothing lands in a deleted volume.
  if (!row) throw new NotFoundError('volume', volumeId);
  return row;
}

export async function adjustUsage(tx: Tx, volumeId: string, deltaBytes: bigint, deltaCount: number): Promise<void> {
  if (deltaBytes === 0n && deltaCount === 0) return;
  // Raw, so entry traffic does not bump the volume's updated_at.
  await tx.$executeRaw`
    UPDATE volumes SET used_bytes = used_bytes + ${deltaBytes}, entry_count = entry_count + ${deltaCount} WHERE id = ${volumeId}`;
}

export function publish(rt: Runtime, event: EntryChangedEvent): void {
  rt.events.publish('entryChanged', event.volumeId, event);
}

/** Deletes objects whose rows are gone. Failures only leave garbage for the reconciler, never lost data. */
export async function discardBlobs(rt: Runtime, bucket: string, keys: (string | null | undefined)[]): Promise<void> {
  const list = keys.filter((k): k is string => typeof k === 'string');
  if (list.length === 0) return;
  try {
    await rt.blobs.deleteMany(bucket, list);
  } catch (err) {
    rt.log.warn({ err, bucket, count: list.length }, 'could not delete replaced objects; left for the reconciler');
  }
}

export async function bucketOf(rt: Runtime, workspaceId: string): Promise<string> {
  const ws = await rt.db.workspace.findUniqueOrThrow({ where: { id: workspaceId }, select: { s3Bucket: true } });
  return ws.s3Bucket;
}

/** Rows removed because their TTL ran out: their objects and subscribers are dealt with after commit. */
export type PurgedEntry = Pick<Entry, 'id' | 'path' | 'blobKey'>;

/**
 * Deletes a volume's expired entries inside a transaction that holds the volume lock, keeping the
 * counters exact. Used by the sweeper, and by a write that would otherwise be refused a quota that
 * only expired entries still occupy.
 */
export async function purgeExpired(
  tx: Tx,
  volumeId: string,
  opts: { exceptPath?: string; limit?: number } = {},
): Promise<{ purged: PurgedEntry[]; bytes: bigint }> {
  const rows = await tx.entry.findMany({
    where: { volumeId, expiresAt: { lte: new Date() }, ...(opts.exceptPath ? { path: { not: opts.exceptPath } } : {}) },
    select: { id: true, path: true, sizeBytes: true, blobKey: true },
    ...(opts.limit ? { take: opts.limit } : {}),
  });
  if (rows.length === 0) return { purged: [], bytes: 0n };
  await tx.entry.deleteMany({ where: { id: { in: rows.map((r) => r.id) } } });
  const bytes = rows.reduce((n, r) => n + r.sizeBytes, 0n);
  await adjustUsage(tx, volumeId, -bytes, -rows.length);
  return { purged: rows.map(({ id, path, blobKey }) => ({ id, path, blobKey })), bytes };
}

/** Removes purged entries' objects and tells subscribers they are gone. */
export async function afterPurge(rt: Runtime, volumeId: string, bucket: string, purged: PurgedEntry[]): Promise<void> {
  if (purged.length === 0) return;
  await discardBlobs(
    rt,
    bucket,
    purged.map((r) => r.blobKey),
  );
  for (const r of purged) publish(rt, { volumeId, entryId: r.id, path: r.path, change: 'deleted', version: null, previousPath: null });
}

/** The fast commit could not settle the write (a quota refused it); the serialised one decides. */
class NeedsSerialisedCommit extends Error {}

/** Attempts of the fast commit when another writer created the same path first (unique violation). */
const CREATE_RACE_ATTEMPTS = 3;

/**
 * Commits a write: applies preconditions, the path-lock guard and quotas, then creates or replaces
 * the row. An expired entry at the path counts as absent: the new one is a fresh entry. Returns the
 * object key the write replaced, for the caller to delete after commit.
 *
 * Writers of one volume do not serialise on its row for the whole transaction: they take it FOR KEY
 * SHARE (which whatever must exclude writers, taking a path lock, deleting the volume, a reconcile,
 * waits for with FOR UPDATE), lock only their own entry row, and charge the volume counters last,
 * in one conditional UPDATE that re-checks the quotas on the row's newest version. So concurrent
 * writers hold the row exclusively for that statement and the commit only, and quotas stay exact.
 * Two creators of one path meet on the (volume_id, path) unique index; the loser retries and finds
 * the winner's row. A write a quota refuses goes through the serialised commit, which may purge
 * expired entries to make room and names the quota.
 * @throws ConflictError, QuotaExceededError, NotFoundError (volume deleted meanwhile), LockedError
 */
export async function commitEntry(
  rt: Runtime,
  volumeId: string,
  path: string,
  data: EntryData,
  pre: WriteConditions,
  opts: CommitOptions = {},
): Promise<CommitResult> {
  return committed(rt, (tx, mode) => commitIn(rt, tx, volumeId, path, data, pre, mode, opts));
}

/** One entry of a batch commit: its path, what it stores and the preconditions it states. */
export interface BatchItem {
  path: string;
  data: EntryData;
  pre: Preconditions;
}

/**
 * Commits several writes to one volume in one transaction, in order: each is checked as
 * `commitEntry` checks one (lock guard, preconditions, quotas, counting the batch's earlier
 * writes), and either all of them are written or none is. `guard` (the lock and fencing token the
 * writer presents) applies to every entry.
 *
 * A fixed number of statements for the batch, whatever its size: the writer gate, the guard's
 * locks, the entry rows (locked in id order), one INSERT of the new entries (in path order), the index jobs and one
 * conditional usage update; only replaced entries take a statement each. On PGlite, which runs one
 * transaction at a time, every round trip inside the transaction is time nothing else runs.
 * A quota refusal that expired entries might lift goes to the serialised commit, entry by entry.
 */
export async function commitEntries(
  rt: Runtime,
  volumeId: string,
  items: readonly BatchItem[],
  guard: WriteGuard = {},
): Promise<CommitResult[]> {
  return committed(rt, async (tx, mode) => {
    if (mode === 'shared') return commitBatchShared(rt, tx, volumeId, items, guard);
    const results: CommitResult[] = [];
    let entered: VolumeEntered | undefined;
    for (const item of items) {
      const result = await commitIn(rt, tx, volumeId, item.path, item.data, { ...item.pre, ...guard }, mode, { entered });
      entered = { indexing_mode: result.indexingMode };
      results.push(result);
    }
    return results;
  });
}

async function commitBatchShared(
  rt: Runtime,
  tx: Tx,
  volumeId: string,
  items: readonly BatchItem[],
  guard: WriteGuard,
): Promise<CommitResult[]> {
  const { indexing_mode: indexingMode } = await enterVolume(tx, volumeId);
  const guarded = await writeGuardOf(tx, volumeId, guard);
  // Rows are locked in id order, as the indexer locks them (search/indexing.ts), and new paths are
  // inserted in path order: two writers meeting on the same rows take them in the same order.
  const rows = await tx.$queryRaw<(LockedEntry & { path: string })[]>`
    SELECT id, path, version, size_bytes AS "sizeBytes", blob_key AS "blobKey", expires_at AS "expiresAt"
    FROM entries WHERE volume_id = ${volumeId} AND path = ANY(${items.map((i) => i.path)}::text[]) ORDER BY id FOR UPDATE`;
  const existingAt = new Map(rows.map((r) => [r.path, r]));
  let bytes = 0n;
  let count = 0;
  const plans = items.map((item) => {
    const existing = existingAt.get(item.path) ?? null;
    const current = existing && !isExpired(existing) ? existing : null;
    guarded(item.path);
    checkPreconditions(current, item.pre, item.path);
    bytes += item.data.sizeBytes - (existing?.sizeBytes ?? 0n);
    count += existing ? 0 : 1;
    return { item, existing, current, fields: rowFields(item.data) };
  });

  // An expired entry at a path is replaced by a new one (as commitIn does).
  const expired = plans.filter((p) => p.existing && !p.current).map((p) => (p.existing as LockedEntry).id);
  if (expired.length > 0) await tx.entry.deleteMany({ where: { id: { in: expired } } });
  const creates = plans.filter((p) => !p.current).sort((a, b) => a.item.path.localeCompare(b.item.path));
  const created = new Map<string, Entry>();
  if (creates.length > 0) {
    const made = await tx.entry.createManyAndReturn({ data: creates.map((p) => ({ ...p.fields, volumeId, path: p.item.path })) });
    for (const e of made) created.set(e.path, e);
  }
  const results: CommitResult[] = [];
  for (const p of plans) {
    const entry = p.current
      ? await tx.entry.update({ where: { id: p.current.id }, data: { ...p.fields, version: { increment: 1 } } })
      : (created.get(p.item.path) as Entry);
    results.push({ entry, created: !p.current, replacedBlob: replacedBlob(p.existing, p.item.data), purged: [], indexingMode });
  }
  // The batch's index jobs in one statement, and its usage in one conditional update, which
  // refuses the batch (all of it) when a quota would be exceeded.
  if (indexingMode === 'auto')
    await queueEntriesIndexing(
      rt,
      tx,
      volumeId,
      results.map((r) => r.entry.id),
    );
  if (!(await chargeUsage(tx, volumeId, bytes, count))) await refuseOverQuota(tx, volumeId, bytes, count);
  for (const p of plans) await rt.hooks.beforeEntryCommit?.(p.item.path);
  return results;
}

/**
 * Runs a commit: first as a concurrent writer (retried when another writer created the same path
 * first), then serialised on the volume row when a quota refused it and expired entries may make room.
 */
async function committed<T>(rt: Runtime, work: (tx: Tx, mode: 'shared' | 'serialised') => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await rt.db.$transaction((tx) => work(tx, 'shared'), TX_OPTIONS);
    } catch (err) {
      if (err instanceof NeedsSerialisedCommit) break;
      if (!isUniqueViolation(err) || attempt >= CREATE_RACE_ATTEMPTS) throw err;
    }
  }
  return rt.db.$transaction((tx) => work(tx, 'serialised'), TX_OPTIONS);
}

/** What an upload session adds to a commit (resumable.ts). */
export interface CommitOptions {
  /**
   * Bytes (and the file) the upload held reserved on the volume: released in the commit's own
   * transaction, before quotas are checked, so the write may use its own room and a failed commit
   * keeps it held.
   */
  releaseReserved?: { bytes: bigint; files: number };
  /** Runs last inside the commit's transaction (the upload session is marked completed there). */
  inTransaction?: (tx: Tx, entry: Entry) => Promise<void>;
  /** The volume's writer gate, already entered by this transaction (a batch's later writes). */
  entered?: VolumeEntered | undefined;
}

type VolumeEntered = { indexing_mode: 'auto' | 'manual' };

const TX_OPTIONS = { timeout: 20_000, maxWait: 20_000 };

async function commitIn(
  rt: Runtime,
  tx: Tx,
  volumeId: string,
  path: string,
  data: EntryData,
  pre: WriteConditions,
  mode: 'shared' | 'serialised',
  opts: CommitOptions = {},
): Promise<CommitResult> {
  // Serialised: the row locked for the whole transaction, its usage read to check quotas by hand.
  const locked = mode === 'serialised' ? await lockVolume(tx, volumeId) : null;
  const indexingMode = locked ? locked.indexing_mode : (opts.entered ?? (await enterVolume(tx, volumeId))).indexing_mode;
  const released = opts.releaseReserved ?? { bytes: 0n, files: 0 };
  if (released.bytes > 0n || released.files > 0) {
    await tx.$executeRaw`
      UPDATE volumes SET reserved_bytes = reserved_bytes - ${released.bytes}, reserved_files = reserved_files - ${released.files} WHERE id = ${volumeId}`;
  }
  const usage = locked && {
    ...locked,
    used_bytes: locked.used_bytes - released.bytes,
    entry_count: locked.entry_count - released.files,
  };
  await checkWriteGuard(tx, volumeId, path, pre);
  let purged: PurgedEntry[] = [];
  const existing = await lockEntryRow(tx, volumeId, path);
  const current = existing && !isExpired(existing) ? existing : null;
  checkPreconditions(current, pre, path);
  const deltaBytes = data.sizeBytes - (existing?.sizeBytes ?? 0n);
  const deltaCount = existing ? 0 : 1;
  if (usage) {
    try {
      checkQuota(usage, deltaBytes, deltaCount);
    } catch (err) {
      // Expired entries are gone for readers; they must not hold a quota until the sweeper runs.
      if (!(err instanceof QuotaExceededError)) throw err;
      const freed = await purgeExpired(tx, volumeId, { exceptPath: path });
      if (freed.purged.length === 0) throw err;
      purged = freed.purged;
      const u = usage as VolumeUsage;
      checkQuota(
        { ...u, used_bytes: u.used_bytes - freed.bytes, entry_count: u.entry_count - freed.purged.length },
        deltaBytes,
        deltaCount,
      );
    }
  }

  const fields = rowFields(data);
  let entry: Entry;
  if (current) {
    entry = await tx.entry.update({ where: { id: current.id }, data: { ...fields, version: { increment: 1 } } });
  } else {
    if (existing) await tx.entry.delete({ where: { id: existing.id } });
    entry = await tx.entry.create({ data: { ...fields, volumeId, path } });
  }
  if (indexingMode === 'auto') await queueEntryIndexing(rt, tx, volumeId, entry.id);
  if (usage) await adjustUsage(tx, volumeId, deltaBytes, deltaCount);
  else if (!(await chargeUsage(tx, volumeId, deltaBytes, deltaCount))) await refuseOverQuota(tx, volumeId, deltaBytes, deltaCount);
  await opts.inTransaction?.(tx, entry);
  await rt.hooks.beforeEntryCommit?.(path);
  return { entry, created: !current, replacedBlob: replacedBlob(existing, data), purged, indexingMode };
}

/** The entry row a write stores: its data, its expiry from the TTL, and not indexed yet. */
function rowFields(data: EntryData) {
  const expiresAt = data.ttlSeconds ? new Date(Date.now() + data.ttlSeconds * 1000) : null;
  // The old chunks stay searchable until the index job swaps them; is_indexed says they are behind.
  return { ...data, expiresAt, isIndexed: false };
}

/** The object a write replaces (deleted once committed): the old row's, unless the write keeps it. */
const replacedBlob = (existing: LockedEntry | null, data: EntryData) =>
  existing?.blobKey && existing.blobKey !== data.blobKey ? existing.blobKey : null;

/**
 * A quota refused the charge. When nothing expired could make room, the refusal is final: it is
 * answered from this transaction (naming the quota). Otherwise the serialised commit decides, as it
 * may purge expired entries first.
 * @throws QuotaExceededError, NotFoundError (deleted meanwhile), NeedsSerialisedCommit
 */
async function refuseOverQuota(tx: Tx, volumeId: string, deltaBytes: bigint, deltaCount: number): Promise<never> {
  const [usage] = await tx.$queryRaw<(VolumeUsage & { deleted: boolean; expired: boolean })[]>`
    SELECT max_size_bytes, max_file_count, used_bytes + reserved_bytes AS used_bytes, entry_count + reserved_files AS entry_count,
      deleted_at IS NOT NULL AS deleted,
      EXISTS (SELECT 1 FROM entries WHERE volume_id = ${volumeId} AND expires_at <= ${new Date()}) AS expired
    FROM volumes WHERE id = ${volumeId}`;
  if (!usage || usage.deleted) throw new NotFoundError('volume', volumeId);
  if (!usage.expired) checkQuota(usage, deltaBytes, deltaCount); // throws, unless the numbers moved meanwhile
  throw new NeedsSerialisedCommit();
}

/**
 * Enters a volume as one of its concurrent writers (FOR KEY SHARE: writers do not wait for each
 * other; FOR UPDATE takers wait for them). @throws NotFoundError when it is deleted
 */
async function enterVolume(tx: Tx, volumeId: string): Promise<{ indexing_mode: 'auto' | 'manual' }> {
  const [row] = await tx.$queryRaw<{ indexing_mode: 'auto' | 'manual' }[]>`
    SELECT indexing_mode::text AS indexing_mode, ${enterAsVolumeWriter} AS gate FROM volumes WHERE id = ${volumeId} AND deleted_at IS NULL`;
  if (!row) throw new NotFoundError('volume', volumeId);
  return row;
}

type LockedEntry = Pick<Entry, 'id' | 'version' | 'sizeBytes' | 'blobKey' | 'expiresAt'>;

/** The row at the path, locked against other writers of that path (expired or not). */
async function lockEntryRow(tx: Tx, volumeId: string, path: string) {
  const [row] = await tx.$queryRaw<LockedEntry[]>`
    SELECT id, version, size_bytes AS "sizeBytes", blob_key AS "blobKey", expires_at AS "expiresAt"
    FROM entries WHERE volume_id = ${volumeId} AND path = ${path} FOR UPDATE`;
  return row ?? null;
}

/**
 * Charges a write to the volume counters if its quotas allow it, in one statement: concurrent
 * updates of the row wait for each other and Postgres re-checks the condition on the newest
 * version, so no two writers can both squeeze under a limit. False when a quota refuses.
 */
async function chargeUsage(tx: Tx, volumeId: string, deltaBytes: bigint, deltaCount: number): Promise<boolean> {
  // Always an UPDATE, even of zero: it is what a locked backup round's FOR SHARE holds writers at.
  const charged = await tx.$executeRaw`
    UPDATE volumes SET used_bytes = used_bytes + ${deltaBytes}, entry_count = entry_count + ${deltaCount}
    WHERE id = ${volumeId} AND deleted_at IS NULL
      AND (${deltaBytes} <= 0 OR max_size_bytes IS NULL OR used_bytes + reserved_bytes + ${deltaBytes} <= max_size_bytes)
      AND (${deltaCount} <= 0 OR max_file_count IS NULL OR entry_count + reserved_files + ${deltaCount} <= max_file_count)`;
  return charged === 1;
}

/** After a commit: remove what it replaced and tell subscribers. */
export interface CommitResult {
  entry: Entry;
  created: boolean;
  /** The object the write replaced, to delete once committed. */
  replacedBlob: string | null;
  /** Expired entries the write purged to make room. */
  purged: PurgedEntry[];
  /** The volume's indexing mode, as the commit read it. */
  indexingMode: 'auto' | 'manual';
}

export async function afterWrite(rt: Runtime, route: VolumeRoute, result: CommitResult) {
  rt.jobs.wake(); // the index job queued with the write is visible now
  if (result.replacedBlob || result.purged.length > 0) {
    const bucket = await bucketOf(rt, route.workspaceId);
    if (result.replacedBlob) await discardBlobs(rt, bucket, [result.replacedBlob]);
    await afterPurge(rt, route.volumeId, bucket, result.purged);
  }
  publish(rt, {
    volumeId: route.volumeId,
    entryId: result.entry.id,
    path: result.entry.path,
    change: result.created ? 'created' : 'updated',
    version: result.entry.version,
    previousPath: null,
  });
}
