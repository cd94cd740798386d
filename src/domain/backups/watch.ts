import type { Principal } from '../access/principal.js';
import type { BackupProgressEvent } from '../shared/events.js';
import type { Runtime } from '../shared/runtime.js';
import { watchUntilTerminal } from '../shared/watch.js';
import { getBackup } from './backups.js';
import { backupProgressOf, TERMINAL_BACKUP_STATUSES } from './progress.js';

// The stream behind the `backupProgress` subscription: authorised before it opens, then the backup's
// state now and every change until its final event (completed or failed), which ends the stream.

/**
 * Progress of one backup: its current state first, then live events (percent never goes backwards;
 * late duplicates from other replicas are dropped), ending after `completed` or `failed`. A backup
 * already finished yields its final state and ends.
 * @throws NotFoundError, ForbiddenError — before the stream opens
 */
export function watchBackup(
  rt: Runtime,
  p: Principal,
  route: { orgId: string; workspaceId: string; volumeId: string; backupId: string },
): Promise<AsyncIterable<BackupProgressEvent>> {
  const isTerminal = (e: BackupProgressEvent) => TERMINAL_BACKUP_STATUSES.has(e.status);
  return watchUntilTerminal(rt, 'backupProgress', route.backupId, {
    current: async () => backupProgressOf(await getBackup(rt, p, route, route.backupId)),
    isTerminal,
    accept: (e, last) => !last || isTerminal(e) || e.status !== last.status || e.percent >= last.percent,
  });
}
