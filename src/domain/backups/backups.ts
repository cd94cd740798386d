import type { Backup, Prisma } from '../../generated/prisma/client.js';
import { authorizeVolume } from '../access/authorize.js';
import type { Principal } from '../access/principal.js';
import { ConflictError, isUniqueViolation, NotFoundError } from '../shared/errors.js';
import { isId } from '../shared/fields.js';
import { type Page, type PageQuery, paginate } from '../shared/pagination.js';
import type { VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { backupPrefix, backupTimestamp } from './format.js';
import { BACKUP } from './job.js';
import { backupProgressOf, publishBackupProgress } from './progress.js';

// Backups of a volume into its workspace bucket (REST `…/sync`, `…/backups`; GraphQL
// `startVolumeBackup`, `volumeBackups`, `backupProgress`). The job that writes them is backup-job.ts,
// the layout backup-format.ts, restoring backup-restore.ts.

// Who may see or take a volume's backups: the volume must be visible, and app keys need an admin
// mount over the whole volume (a backup holds every path, whatever a narrower mount covers).

/**
 * Starts a backup of the volume (a durable job), or answers the one already queued or running: one
 * at a time per volume. Needs `volumes:write`; app keys need an admin mount over the whole volume.
 * @throws NotFoundError, ForbiddenError, ConflictError (the workspace bucket is not active)
 */
export async function startBackup(rt: Runtime, p: Principal, route: VolumeRoute): Promise<{ backup: Backup; created: boolean }> {
  const { orgId, workspaceId, volumeId } = route;
  const volume = await authorizeVolume(rt, p, route, { scope: 'volumes:write', admin: true });
  const ws = await rt.db.workspace.findUniqueOrThrow({ where: { id: workspaceId }, select: { bucketStatus: true } });
  if (ws.bucketStatus !== 'active') {
    throw new ConflictError(`The workspace's bucket is ${ws.bucketStatus}; backups are possible once it is active`, {
      bucket_status: ws.bucketStatus,
    });
  }
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await rt.db.$transaction(async (tx) => {
        // Serialises starters of one volume (writers are not involved) so two requests make one backup.
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`backup:${volumeId}`}))`;
        const running = await tx.backup.findFirst({ where: { volumeId, status: { in: ['queued', 'running'] } }, orderBy: { id: 'desc' } });
        if (running) {
          const job = await tx.job.findUnique({ where: { dedupeKey: `${BACKUP}:${running.id}` }, select: { status: true } });
          if (job?.status === 'queued' || job?.status === 'running') return { backup: running, created: false };
          // Its job is gone without saying how it ended (e.g. the failure could not be recorded): not in flight.
          await tx.backup.update({
            where: { id: running.id },
            data: { status: 'failed', error: 'the backup job ended without finishing', completedAt: new Date() },
          });
        }
        // A millisecond later per retry: two backups of one volume in the same millisecond get distinct prefixes.
        const requestedAt = new Date(Date.now() + attempt);
        const timestamp = backupTimestamp(requestedAt);
        const backup = await tx.backup.create({
          data: {
            orgId,
            workspaceId,
            volumeId,
            volumeName: volume.name,
            timestamp,
            prefix: backupPrefix(volumeId, timestamp),
            createdBy: p.subject,
            createdAt: requestedAt,
            progress: { phase: 'queued', total: 0, processed: 0, percent: 0, bytes_copied: 0 },
          },
        });
        await rt.jobs.enqueue(tx, {
          kind: BACKUP,
          dedupeKey: `${BACKUP}:${backup.id}`,
          volumeId,
          payload: { backupId: backup.id },
          maxAttempts: 3,
        });
        return { backup, created: true };
      });
      if (result.created) publishBackupProgress(rt, backupProgressOf(result.backup));
      return result;
    } catch (err) {
      if (!isUniqueViolation(err) || attempt >= 5) throw err;
    }
  }
}

/**
 * A volume's backups, oldest first (keyset pages). Needs `volumes:read` (app keys: whole-volume admin).
 * @throws NotFoundError, ForbiddenError, ValidationError (cursor)
 */
export async function listBackups(rt: Runtime, p: Principal, route: VolumeRoute, page: PageQuery): Promise<Page<Backup>> {
  const { orgId, workspaceId, volumeId } = route;
  const where = await backupsWhere(rt, p, { orgId, workspaceId, volumeId });
  return paginate(
    page,
    () => rt.db.backup.count({ where }),
    (args) => rt.db.backup.findMany({ ...args, where: { ...where, ...args.where } }),
  );
}

/** The filter selecting a volume's backups, after the access checks (GraphQL connections use it). */
export async function backupsWhere(rt: Runtime, p: Principal, route: VolumeRoute): Promise<Prisma.BackupWhereInput> {
  const { orgId, workspaceId, volumeId } = route;
  await authorizeVolume(rt, p, route, { scope: 'volumes:read', admin: true });
  return { volumeId, workspaceId, orgId };
}

/** @throws NotFoundError, ForbiddenError */
export async function getBackup(rt: Runtime, p: Principal, route: VolumeRoute, backupId: string): Promise<Backup> {
  const { orgId, workspaceId, volumeId } = route;
  await authorizeVolume(rt, p, route, { scope: 'volumes:read', admin: true });
  const backup = isId(backupId) ? await rt.db.backup.findFirst({ where: { id: backupId, volumeId, workspaceId, orgId } }) : null;
  if (!backup) throw new NotFoundError('backup', backupId);
  return backup;
}

/** Where a backup lives, for GraphQL operations that know only its id. @throws NotFoundError */
export async function backupRoute(
  rt: Runtime,
  backupId: string,
): Promise<{ orgId: string; workspaceId: string; volumeId: string; backupId: string }> {
  const b = isId(backupId)
    ? await rt.db.backup.findUnique({ where: { id: backupId }, select: { orgId: true, workspaceId: true, volumeId: true } })
    : null;
  if (!b) throw new NotFoundError('backup', backupId);
  return { ...b, backupId };
}
