import { locateVolume, locateWorkspace } from '../../domain/access/authorize.js';
import { backupRoute, backupsWhere, getBackup, startBackup } from '../../domain/backups/backups.js';
import { backupProgressOf } from '../../domain/backups/progress.js';
import { type RestoreResult, restoreVolume } from '../../domain/backups/restore.js';
import { watchBackup } from '../../domain/backups/watch.js';
import type { BackupProgressEvent } from '../../domain/shared/events.js';
import { builder } from '../builder.js';
import { toDomainInput } from '../inputs.js';
import { selectedRow } from '../selected-row.js';
import { Volume } from './volume.js';

const BackupStatus = builder.enumType('BackupStatus', { values: ['queued', 'running', 'completed', 'failed'] as const });
const BackupPhase = builder.enumType('BackupPhase', { values: ['queued', 'copying_files', 'snapshot', 'done'] as const });
const date = (d: Date | string | null) => (d ? new Date(d) : null); // events that crossed Redis carry strings

const BackupProgress = builder.objectRef<BackupProgressEvent>('BackupProgress').implement({
  description: 'Where a backup stands. percent never goes backwards; completed and failed are final.',
  fields: (t) => ({
    backupId: t.exposeID('backupId'),
    volumeId: t.exposeID('volumeId'),
    status: t.field({ type: BackupStatus, resolve: (e) => e.status }),
    phase: t.field({ type: BackupPhase, resolve: (e) => e.phase }),
    total: t.exposeInt('total', { description: 'Entries in the snapshot (known once it is taken)' }),
    processed: t.exposeInt('processed', { description: 'Entries written so far' }),
    percent: t.exposeFloat('percent'),
    bytesCopied: t.field({ type: 'SafeInt', resolve: (e) => e.bytesCopied }),
    error: t.exposeString('error', { nullable: true }),
    startedAt: t.field({ type: 'DateTime', nullable: true, resolve: (e) => date(e.startedAt) }),
    completedAt: t.field({ type: 'DateTime', nullable: true, resolve: (e) => date(e.completedAt) }),
  }),
});

builder.prismaObject('Backup', {
  description: 'A snapshot of a volume in its workspace bucket under backups/{volumeId}/{timestamp}/. Outlives the volume.',
  fields: (t) => ({
    id: t.exposeID('id'),
    volumeId: t.exposeID('volumeId'),
    workspaceId: t.exposeID('workspaceId'),
    volumeName: t.exposeString('volumeName'),
    status: t.expose('status', { type: BackupStatus }),
    progress: t.field({ type: BackupProgress, resolve: (b) => backupProgressOf(b) }),
    timestamp: t.exposeString('timestamp', { description: "The prefix's last segment, e.g. 20250101T120000000Z" }),
    prefix: t.exposeString('prefix'),
    entryCount: t.exposeInt('entryCount'),
    fileCount: t.exposeInt('fileCount'),
    totalBytes: t.expose('totalBytes', { type: 'SafeInt' }),
    manifestSha256: t.exposeString('manifestSha256', { nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    createdBy: t.exposeString('createdBy'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    startedAt: t.expose('startedAt', { type: 'DateTime', nullable: true }),
    snapshotAt: t.expose('snapshotAt', { type: 'DateTime', nullable: true, description: 'The moment the snapshot reflects' }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
  }),
});

const RestoreVolumePayload = builder.objectRef<RestoreResult>('RestoreVolumePayload').implement({
  description: 'A volume created from a backup.',
  fields: (t) => ({
    volume: t.field({ type: Volume, resolve: (r) => r.volume }),
    backupId: t.exposeID('backupId'),
    sourceVolumeId: t.exposeID('sourceVolumeId'),
    snapshotAt: t.expose('snapshotAt', { type: 'DateTime' }),
    restoredEntries: t.exposeInt('entries'),
    restoredFiles: t.exposeInt('files'),
    skippedExpired: t.exposeInt('skippedExpired', { description: 'Entries whose TTL ran out since the snapshot' }),
  }),
});

const RestoreVolumeInput = builder.inputType('RestoreVolumeInput', {
  description: 'The backup (backupId, or sourceVolumeId + timestamp) and the new volume.',
  fields: (t) => ({
    workspaceId: t.id({ required: true, description: 'Where the new volume is created' }),
    backupId: t.id(),
    sourceVolumeId: t.id(),
    timestamp: t.string({ description: 'With sourceVolumeId: the backup timestamp (20250101T120000000Z) or the same instant in ISO 8601' }),
    name: t.string({ required: true }),
    description: t.string(),
  }),
});

builder.queryFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    backup: t.prismaField({
      type: 'Backup',
      description: 'A backup of a volume the caller can see (app keys: with an admin mount over the whole volume).',
      args: { id: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const r = await backupRoute(ctx.runtime, String(args.id));
        return selectedRow(ctx, 'Backup', query, getBackup(ctx.runtime, ctx.principal, r, r.backupId));
      },
    }),
    volumeBackups: t.prismaConnection({
      type: 'Backup',
      cursor: 'id',
      description: "A volume's backups, oldest first.",
      args: { volumeId: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const where = await backupsWhere(ctx.runtime, ctx.principal, await locateVolume(ctx.runtime, String(args.volumeId)));
        return ctx.runtime.db.backup.findMany({ ...query, where, orderBy: { id: 'asc' } });
      },
      totalCount: async (_root, args, ctx) => {
        const where = await backupsWhere(ctx.runtime, ctx.principal, await locateVolume(ctx.runtime, String(args.volumeId)));
        return ctx.runtime.db.backup.count({ where });
      },
    }),
  };
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    startVolumeBackup: t.prismaField({
      type: 'Backup',
      description:
        'Starts a backup of the volume to its workspace bucket (REST POST …/sync), or returns the one already queued or running. Follow it with backupProgress.',
      args: { volumeId: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        const started = startBackup(ctx.runtime, ctx.principal, route).then(({ backup }) => backup);
        return selectedRow(ctx, 'Backup', query, started);
      },
    }),
    restoreVolume: t.field({
      type: RestoreVolumePayload,
      description:
        'Creates a new volume from a completed backup after verifying every checksum (a mismatch is a CONFLICT error and creates nothing).',
      args: { input: t.arg({ type: RestoreVolumeInput, required: true }) },
      resolve: async (_root, args, ctx) => {
        const { workspaceId, ...input } = args.input;
        const route = await locateWorkspace(ctx.runtime, String(workspaceId));
        return restoreVolume(ctx.runtime, ctx.principal, route, toDomainInput(input), ['input']);
      },
    }),
  };
});

builder.subscriptionFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    backupProgress: t.field({
      type: BackupProgress,
      description: "A backup's state now, then every change, ending with its completed or failed event.",
      args: { backupId: t.arg.id({ required: true }) },
      subscribe: async (_root, args, ctx) => watchBackup(ctx.runtime, ctx.principal, await backupRoute(ctx.runtime, String(args.backupId))),
      resolve: (e) => e,
    }),
  };
});
