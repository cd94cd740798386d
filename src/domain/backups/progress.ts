import type { Backup } from '../../generated/prisma/client.js';
import type { BackupProgressEvent } from '../shared/events.js';
import type { Runtime } from '../shared/runtime.js';

/** The `progress` column of a backup row (snake_case, as REST shows it). */
export interface BackupProgressJson {
  phase: BackupProgressEvent['phase'];
  total: number;
  processed: number;
  percent: number;
  bytes_copied: number;
}

export const TERMINAL_BACKUP_STATUSES = new Set<string>(['completed', 'failed']);

export function progressJsonOf(b: Pick<Backup, 'progress'>): BackupProgressJson {
  const p = (b.progress ?? {}) as Partial<BackupProgressJson>;
  return {
    phase: p.phase ?? 'queued',
    total: p.total ?? 0,
    processed: p.processed ?? 0,
    percent: p.percent ?? 0,
    bytes_copied: p.bytes_copied ?? 0,
  };
}

/** A backup row as the event subscribers (and GraphQL's `Backup.progress`) see it. */
export function backupProgressOf(
  b: Pick<Backup, 'id' | 'volumeId' | 'status' | 'progress' | 'error' | 'startedAt' | 'completedAt'>,
): BackupProgressEvent {
  const p = progressJsonOf(b);
  return {
    backupId: b.id,
    volumeId: b.volumeId,
    status: b.status,
    phase: p.phase,
    total: p.total,
    processed: p.processed,
    percent: p.percent,
    bytesCopied: p.bytes_copied,
    error: b.error,
    startedAt: b.startedAt,
    completedAt: b.completedAt,
  };
}

export function publishBackupProgress(rt: Runtime, e: BackupProgressEvent): void {
  rt.events.publish('backupProgress', e.backupId, e);
}
