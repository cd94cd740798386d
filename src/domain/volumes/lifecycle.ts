import { z } from 'zod';
import type { Tx } from '../../db/client.js';
import type { Prisma, Volume } from '../../generated/prisma/client.js';
import { enterOrg } from '../access/authenticate.js';
import { findVisibleVolume, findWorkspace } from '../access/authorize.js';
import { type Principal, requireScope } from '../access/principal.js';
import { deletedVolumeWhere, requireVolumeAdmin } from '../access/visibility.js';
import { queueEntryIndexing } from '../search/indexing.js';
import { queueReindex } from '../search/reindex.js';
import { ConflictError, isUniqueViolation, NotFoundError } from '../shared/errors.js';
import { isId, Name } from '../shared/fields.js';
import type { VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { excludeVolumeWriters } from '../shared/volume-gate.js';
import { refreshVolumeStatus } from './status.js';
import { volumeObjectPrefix } from './volumes.js';

// Deleting a volume hides it (soft delete): `deleted_at` is set and the visibility rules in
// access.ts stop finding it, so its entries, search hits, mounts, locks and subscriptions stop
// working at once. Its rows and objects stay for the retention period, during which it can be
// restored as it was; then the maintenance purge removes it for good. `?permanent=true` skips the wait.

const DAY_MS = 24 * 60 * 60 * 1000;

/** Volumes deleted at or before this moment are past retention: no longer restorable, due for purge. */
export function retentionCutoff(rt: Runtime, now = new Date()): Date {
  return new Date(now.getTime() - rt.settings.volumeRetentionDays * DAY_MS);
}

/** Until when a soft-deleted volume can be restored (null for a live one). */
export function restorableUntil(rt: Runtime, v: Pick<Volume, 'deletedAt'>): Date | null {
  return v.deletedAt ? new Date(v.deletedAt.getTime() + rt.settings.volumeRetentionDays * DAY_MS) : null;
}

/** Soft-deleted volumes the principal may still restore: visible to it as deleted, within retention. */
export function restorableVolumeWhere(rt: Runtime, p: Principal, orgId?: string): Prisma.VolumeWhereInput {
  return { AND: [deletedVolumeWhere(p, orgId), { deletedAt: { gt: retentionCutoff(rt) } }] };
}

export const UndeleteVolumeInput = z.object({
  name: Name.optional().describe('Restore it under this name (when another volume has taken its own meanwhile)'),
});
export type UndeleteVolumeInput = z.input<typeof UndeleteVolumeInput>;

/** A soft-deleted volume the principal may act on, scoped by the route. @throws NotFoundError */
async function findDeletedVolume(
  rt: Runtime,
  where: Prisma.VolumeWhereInput,
  orgId: string,
  workspaceId: string,
  volumeId: string,
): Promise<Volume & { workspace: { s3Bucket: string } }> {
  if (!isId(volumeId)) throw new NotFoundError('volume', volumeId);
  const volume = await rt.db.volume.findFirst({
    where: { AND: [where, { orgId, workspaceId, id: volumeId }] },
    include: { workspace: { select: { s3Bucket: true } } },
  });
  if (!volume) throw new NotFoundError('volume', volumeId);
  return volume;
}

/** How `deleteVolume` deletes. */
export interface DeleteVolumeOptions {
  /** Delete now, for good (rows, then objects), also a volume already soft-deleted; default: soft delete. */
  permanent?: boolean | undefined;
  /**
   * Refuse (409 CONFLICT, `details.mount_count`) while the volume is attached (`isVolumeAttached`:
   * live with mounts), for APIs whose volumes "must not be attached" to be deleted. Decided under the
   * volume's row lock, which creating a mount takes too. Without it (/v1, GraphQL) a volume is
   * deleted with its mounts.
   */
  refuseIfAttached?: boolean | undefined;
}

const attached = (volumeId: string, mountCount: number) =>
  new ConflictError(`The volume is attached: it has ${mountCount} mount(s); delete them first`, {
    volume_id: volumeId,
    mount_count: mountCount,
    reason: 'attached',
  });

/**
 * Deletes a volume (`volumes:write`; app keys need an admin mount over the whole volume). By
 * default a soft delete: the volume is hidden at once (404 everywhere, as if missing), its version
 * incremented and `modified_by` set, and it stays restorable for the retention period. With
 * `permanent` its rows go now (entries, chunks, mounts and locks cascade), then its objects; a
 * volume already soft-deleted can be deleted permanently this way too. With `refuseIfAttached` a
 * live volume with mounts is left as it is (409).
 * @throws ForbiddenError, NotFoundError, ConflictError (attached, with `refuseIfAttached`)
 */
export async function deleteVolume(rt: Runtime, p: Principal, route: VolumeRoute, opts: DeleteVolumeOptions = {}): Promise<void> {
  const { orgId, workspaceId, volumeId } = route;
  await enterOrg(rt, p, orgId);
  requireScope(p, 'volumes:write');
  if (opts.permanent) {
    let bucket: string;
    try {
      const v = await findVisibleVolume(rt, p, { orgId, workspaceId, volumeId });
      await requireVolumeAdmin(rt, p, v.id);
      bucket = (await findWorkspace(rt, p, { orgId, workspaceId })).s3Bucket;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      bucket = (await findDeletedVolume(rt, deletedVolumeWhere(p, orgId), orgId, workspaceId, volumeId)).workspace.s3Bucket;
    }
    // One statement decides "still detached" and deletes, so a mount created meanwhile (it locks the
    // row to count itself) either lands first and is refused here, or finds the volume gone.
    const detached: Prisma.VolumeWhereInput = opts.refuseIfAttached ? { OR: [{ mountCount: 0 }, { deletedAt: { not: null } }] } : {};
    const { count } = await rt.db.volume.deleteMany({ where: { id: volumeId, workspaceId, ...detached } });
    if (count === 0) {
      const held = opts.refuseIfAttached
        ? await rt.db.volume.findFirst({ where: { id: volumeId, workspaceId }, select: { mountCount: true } })
        : null;
      if (held) throw attached(volumeId, held.mountCount);
      throw new NotFoundError('volume', volumeId);
    }
    await removeVolumeObjects(rt, bucket, volumeId);
    return;
  }
  await findWorkspace(rt, p, { orgId, workspaceId });
  await findVisibleVolume(rt, p, { orgId, workspaceId, volumeId });
  await requireVolumeAdmin(rt, p, volumeId);
  await rt.db.$transaction(async (tx) => {
    // FOR UPDATE waits for the writers in flight (they hold the row FOR KEY SHARE, entries/commit.ts):
    // a write that passed its visibility check before this commits finds the volume deleted, and none lands after.
    await excludeVolumeWriters(tx, volumeId);
    const [row] = await tx.$queryRaw<{ mount_count: number }[]>`
      SELECT mount_count FROM volumes WHERE id = ${volumeId} AND deleted_at IS NULL FOR UPDATE`;
    if (!row) throw new NotFoundError('volume', volumeId);
    if (opts.refuseIfAttached && row.mount_count > 0) throw attached(volumeId, row.mount_count);
    await tx.volume.update({
      where: { id: volumeId },
      data: { deletedAt: new Date(), status: 'deleted', version: { increment: 1 }, modifiedBy: p.subject },
    });
  });
}

const nameTaken = (name: string, holder: string) =>
  new ConflictError(`A volume named '${name}' already exists in this workspace; restore this one under another name`, {
    field: 'name',
    value: name,
    volume_id: holder,
  });

/**
 * Brings back a soft-deleted volume within its retention period, with its entries, chunks, mounts
 * and settings as they were (`volumes:write`; app keys need the admin mount on `/**` they would
 * need to delete it, else it does not exist for them). The version is incremented and `modified_by`
 * set. Indexing interrupted by the delete resumes. It keeps its name unless `name` is given.
 * @throws NotFoundError (unknown, not deleted, or past retention), ForbiddenError, ValidationError,
 * ConflictError (a live volume took its name meanwhile)
 */
export async function undeleteVolume(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  raw: unknown = {},
  loc: (string | number)[] = ['body'],
): Promise<Volume> {
  const { orgId, workspaceId, volumeId } = route;
  await enterOrg(rt, p, orgId);
  requireScope(p, 'volumes:write');
  const before = await findDeletedVolume(rt, restorableVolumeWhere(rt, p, orgId), orgId, workspaceId, volumeId);
  const input = parseInput(UndeleteVolumeInput, raw ?? {}, loc);
  const name = input.name ?? before.name;
  try {
    const restored = await rt.db.$transaction(async (tx) => {
      // The purge deletes only rows still deleted past the cutoff, so holding the row lock here
      // settles a race with it either way.
      await excludeVolumeWriters(tx, volumeId);
      const [row] = await tx.$queryRaw<{ deleted_at: Date | null }[]>`SELECT deleted_at FROM volumes WHERE id = ${volumeId} FOR UPDATE`;
      if (!row?.deleted_at || row.deleted_at <= retentionCutoff(rt)) throw new NotFoundError('volume', volumeId);
      const holder = await tx.volume.findFirst({ where: { workspaceId, name, deletedAt: null }, select: { id: true } });
      if (holder) throw nameTaken(name, holder.id);
      const volume = await tx.volume.update({
        where: { id: volumeId },
        data: { deletedAt: null, name, status: 'active', version: { increment: 1 }, modifiedBy: p.subject },
      });
      await resumeIndexing(rt, tx, volume);
      return volume;
    });
    // Back to what it really is: degraded if indexing had failed, error if the bucket did.
    const status = await refreshVolumeStatus(rt, { volumeId });
    return status ? { ...restored, status } : restored;
  } catch (err) {
    if (isUniqueViolation(err)) {
      const holder = await rt.db.volume.findFirst({ where: { workspaceId, name, deletedAt: null }, select: { id: true } });
      throw nameTaken(name, holder?.id ?? '');
    }
    throw err;
  }
}

/**
 * Index work the soft delete cut short: jobs that ran while the volume was hidden finished without
 * indexing (indexing.ts treats a deleted volume as gone), so a reindex that was under way is queued
 * again and, in `auto` mode, every entry not indexed yet (and not failed) gets its job back.
 */
async function resumeIndexing(rt: Runtime, tx: Tx, volume: Volume): Promise<void> {
  if (volume.reindexStatus === 'queued' || volume.reindexStatus === 'running') await queueReindex(rt, tx, volume);
  if (volume.indexingMode !== 'auto') return;
  const pending = await tx.entry.findMany({ where: { volumeId: volume.id, isIndexed: false, indexError: null }, select: { id: true } });
  for (const e of pending) await queueEntryIndexing(rt, tx, volume.id, e.id);
}

/**
 * Permanently removes soft-deleted volumes past retention (at `now`): rows first (entries, chunks,
 * mounts, locks cascade), then their objects. Safe on several replicas at once: each volume goes in
 * one statement that re-checks the cutoff, so exactly one replica removes it, and a restore holding
 * the row lock makes that statement find the volume live and leave it. Returns the ids removed.
 */
export async function purgeDeletedVolumes(rt: Runtime, now = new Date(), batch = 50): Promise<string[]> {
  const cutoff = retentionCutoff(rt, now);
  const due = await rt.db.volume.findMany({
    where: { deletedAt: { lte: cutoff } },
    select: { id: true },
    orderBy: { deletedAt: 'asc' },
    take: batch,
  });
  const purged: string[] = [];
  for (const { id } of due) {
    const rows = await rt.db.$queryRaw<{ s3_bucket: string }[]>`
      DELETE FROM volumes v USING workspaces w
      WHERE v.id = ${id} AND v.deleted_at <= ${cutoff} AND w.id = v.workspace_id
      RETURNING w.s3_bucket`;
    const bucket = rows[0]?.s3_bucket;
    if (bucket === undefined) continue;
    await removeVolumeObjects(rt, bucket, id);
    purged.push(id);
  }
  if (purged.length > 0) rt.log.info({ volumes: purged }, 'purged deleted volumes past retention');
  return purged;
}

async function removeVolumeObjects(rt: Runtime, bucket: string, volumeId: string): Promise<void> {
  try {
    await rt.blobs.deletePrefix(bucket, volumeObjectPrefix(volumeId));
  } catch (err) {
    // The rows are gone, so these objects are unreachable garbage, not data: the reconciler
    // (objects without rows) collects them. Failing the request now would only invite a retry
    // that answers 404.
    rt.log.warn({ err, volumeId, bucket }, 'could not delete volume objects; left for the reconciler');
  }
}
