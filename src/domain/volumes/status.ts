import { Prisma, type Volume } from '../../generated/prisma/client.js';
import type { Runtime } from '../shared/runtime.js';
import { excludeVolumeWriters } from '../shared/volume-gate.js';

// A volume's `status` says what state it is really in. It is derived from facts stored elsewhere,
// by the one rule below, and kept in the `status` column (so lists can filter and count by it):
// refreshed where those facts change (soft delete and restore, an entry's indexing failing or
// succeeding again, a reindex ending, a workspace's bucket failing), and re-derived for every
// volume by the periodic maintenance as a safety net (e.g. a failed entry deleted or expired).

export type VolumeStatus = 'active' | 'degraded' | 'error' | 'deleted';

/**
 * The rule, first match wins:
 * - `deleted`: soft-deleted (`deleted_at` set), restorable until its retention ends;
 * - `error`: its workspace's bucket failed to provision, so no file can be stored or read;
 * - `degraded`: search is incomplete: some entry's last indexing attempt failed (`index_error`,
 *   cleared when indexing it succeeds) or the last reindex failed as a whole;
 * - `active` otherwise.
 */
const STATUS = Prisma.sql`CASE
  WHEN v.deleted_at IS NOT NULL THEN 'deleted'
  WHEN EXISTS (SELECT 1 FROM workspaces w WHERE w.id = v.workspace_id AND w.bucket_status = 'failed') THEN 'error'
  WHEN v.reindex_status = 'failed'
    OR EXISTS (SELECT 1 FROM entries e WHERE e.volume_id = v.id AND e.index_error IS NOT NULL) THEN 'degraded'
  ELSE 'active' END::"VolumeStatus"`;

const update = (scope: Prisma.Sql) => Prisma.sql`
  UPDATE volumes v SET status = ${STATUS}
  WHERE ${scope} AND v.status IS DISTINCT FROM ${STATUS}
  RETURNING v.status::text AS status`;

/**
 * Re-derives the status of one volume (given directly or through one of its entries) and stores it.
 * The statement runs after taking the volume's row lock, so it sees every change committed before
 * it, whichever replica made it: of two refreshes racing, the later one writes the truth.
 * Returns the new status when it changed, else null.
 */
export async function refreshVolumeStatus(rt: Runtime, target: { volumeId: string } | { entryId: string }): Promise<VolumeStatus | null> {
  let volumeId: string | undefined;
  if ('volumeId' in target) volumeId = target.volumeId;
  else volumeId = (await rt.db.entry.findUnique({ where: { id: target.entryId }, select: { volumeId: true } }))?.volumeId;
  if (volumeId === undefined) return null;
  const id = volumeId;
  return rt.db.$transaction(async (tx) => {
    await excludeVolumeWriters(tx, id);
    await tx.$queryRaw`SELECT id FROM volumes WHERE id = ${id} FOR UPDATE`;
    const rows = await tx.$queryRaw<{ status: VolumeStatus }[]>(update(Prisma.sql`v.id = ${id}`));
    return rows[0]?.status ?? null;
  });
}

/**
 * Re-derives the status of a workspace's volumes (its bucket's state changed), or of every volume
 * (the maintenance safety net). Only rows whose status changes are written. Returns how many changed.
 */
export async function refreshVolumeStatuses(rt: Runtime, where: { workspaceId?: string } = {}): Promise<number> {
  const scope = where.workspaceId === undefined ? Prisma.sql`TRUE` : Prisma.sql`v.workspace_id = ${where.workspaceId}`;
  const rows = await rt.db.$queryRaw<{ status: VolumeStatus }[]>(update(scope));
  return rows.length;
}

/**
 * Whether a volume is attached: live, with at least one mount (`mount_count`, kept exact under the
 * row lock). `deleteVolume(…, { refuseIfAttached: true })` refuses to delete an attached volume.
 */
export function isVolumeAttached(v: Pick<Volume, 'mountCount' | 'deletedAt'>): boolean {
  return v.deletedAt === null && v.mountCount > 0;
}

/**
 * A volume's state as the peer APIs show it, one rule for all: a failed bucket (`error`) first, then
 * incomplete search (`degraded`), then whether any app has it mounted.
 */
export function volumeAvailability(
  v: Pick<Volume, 'status' | 'mountCount' | 'deletedAt'>,
): 'error' | 'degraded' | 'attached' | 'available' {
  if (v.status === 'error' || v.status === 'degraded') return v.status;
  return isVolumeAttached(v) ? 'attached' : 'available';
}
