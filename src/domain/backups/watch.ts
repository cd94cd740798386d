import type { Principal } from '../access/principal.js';
import type { BackupProgressEvent } from '../shared/events.js';
import type { Runtime } from '../shared/runtime.js';
import { getBackup } from './backups.js';
import { backupProgressOf, TERMINAL_BACKUP_STATUSES } from './progress.js';

// The stream behind the `backupProgress` subscription: authorised before it opens, then the backup's
// state now and every change until its final event (completed or failed), which ends the stream.

const done = (e: BackupProgressEvent) => e.percent;

/**
 * Progress of one backup: its current state first, then live events (percent never goes backwards;
 * late duplicates from other replicas are dropped), ending after `completed` or `failed`. A backup
 * already finished yields its final state and ends.
 * @throws NotFoundError, ForbiddenError — before the stream opens
 */
export async function watchBackup(
  rt: Runtime,
  p: Principal,
  route: { orgId: string; workspaceId: string; volumeId: string; backupId: string },
): Promise<AsyncIterable<BackupProgressEvent>> {
  await getBackup(rt, p, route, route.backupId);
  const source = rt.events.subscribe('backupProgress', route.backupId)[Symbol.asyncIterator]();
  // Listen before reading the current state, so nothing published in between is missed.
  let pending = source.next();
  const current = backupProgressOf(await rt.db.backup.findUniqueOrThrow({ where: { id: route.backupId } }));
  async function* stream(): AsyncGenerator<BackupProgressEvent> {
    try {
      let last = current;
      yield current;
      if (TERMINAL_BACKUP_STATUSES.has(current.status)) return;
      while (true) {
        const next = await pending;
        if (next.done) return;
        pending = source.next();
        const e = next.value;
        const terminal = TERMINAL_BACKUP_STATUSES.has(e.status);
        if (!terminal && e.status === last.status && done(e) < done(last)) continue;
        last = e;
        yield e;
        if (terminal) return;
      }
    } finally {
      await source.return?.();
    }
  }
  return stream();
}
