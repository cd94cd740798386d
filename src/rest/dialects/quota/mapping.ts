import { volumeAvailability } from '../../../domain/volumes/status.js';
import type { Volume } from '../../../generated/prisma/client.js';
import type { ClassifiedError } from '../../errors.js';
import type { QuotaError, QuotaStatus, QuotaVolume } from './schemas.js';

// Our model -> the quota dialect's names, units and shapes. No rule lives here: the status comes
// from the domain's stored status (src/domain/volumes/status.ts) and its attachment rule.

/**
 * The reference's `status`, first match wins: our `error` (bucket failed) and `degraded` (search
 * incomplete) as they are; a live volume with mounts is `attached` (the domain's `volumeAvailability`), any other
 * `available`. Deleted volumes never reach a quota response (not listed, 404 by id).
 */
export function quotaStatus(v: Pick<Volume, 'status' | 'mountCount' | 'deletedAt'>): QuotaStatus {
  return volumeAvailability(v);
}

/** A volume as the reference shows it; `host_id` is never sent (see schemas.ts). */
export function quotaVolumeJson(v: Volume): QuotaVolume {
  return {
    id: v.id,
    name: v.name,
    created_at: v.createdAt.toISOString(),
    used_bytes: Number(v.usedBytes),
    inode_count: v.entryCount,
    mount_count: v.mountCount,
    max_size_bytes: v.maxSizeBytes === null ? null : Number(v.maxSizeBytes),
    max_file_count: v.maxFileCount,
    max_mounts: v.maxMounts,
    last_reconciled_at: v.lastReconciledAt ? v.lastReconciledAt.toISOString() : null,
    status: quotaStatus(v),
  };
}

const LOCATIONS = new Set(['query', 'path', 'header', 'body']);

/**
 * Every failure as `{"error": {code, message, details?, errors?}}` (the reference shows no error
 * body; this is the snake_case style of its fields). The status is the one /v1 answers.
 */
export function quotaErrorBody(e: ClassifiedError): QuotaError {
  const code = e.code === 'INTERNAL' ? 'internal_error' : (e.code.toLowerCase() as QuotaError['error']['code']);
  const error: QuotaError['error'] = { code, message: e.message };
  if (Object.keys(e.details).length > 0) error.details = e.details;
  if (e.issues) {
    error.errors = e.issues.map((i) => {
      const [first, ...rest] = i.loc.map(String);
      const located = first !== undefined && LOCATIONS.has(first) && rest.length > 0;
      return {
        ...(located ? { in: first as 'query' | 'path' | 'header' | 'body' } : {}),
        name: (located ? rest : i.loc.map(String)).join('.'),
        message: i.msg,
        type: i.type,
        ...(i.input !== undefined && i.input !== null ? { value: i.input } : {}),
        ...(i.ctx && Object.keys(i.ctx).length > 0 ? { ctx: i.ctx } : {}),
      };
    });
  }
  return { error };
}
