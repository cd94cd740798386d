import { locateWorkspace } from '../../domain/access/authorize.js';
import { reconcileWorkspaceFor, type UsageReport, type WorkspaceReconciliation } from '../../domain/maintenance/maintenance.js';
import type { BucketStatusEvent } from '../../domain/shared/events.js';
import { isId } from '../../domain/shared/fields.js';
import { listedVolumeWhere, volumeFilterWhere } from '../../domain/volumes/listing.js';
import { WORKSPACE_STATUSES, workspaceListWhere } from '../../domain/workspaces/listing.js';
import { watchBucket } from '../../domain/workspaces/watch.js';
import { createWorkspace, deleteWorkspace, updateWorkspace, workspaceReadFilter } from '../../domain/workspaces/workspaces.js';
import { builder, Deleted } from '../builder.js';
import { orgFor, toDomainInput } from '../inputs.js';
import { listFilterArgs, offsetArg, offsetOf, orderOf, volumeFiltersOf, workspaceFiltersOf } from '../list-args.js';
import { selectedRow } from '../selected-row.js';
import { VolumeStatus, VolumeType } from './volume.js';

const BucketStatus = builder.enumType('BucketStatus', { values: ['pending', 'active', 'failed'] as const });
const WorkspaceStatus = builder.enumType('WorkspaceStatus', {
  values: WORKSPACE_STATUSES,
  description: 'Whether a workspace is active (isActive)',
});

export const Workspace = builder.prismaObject('Workspace', {
  description: 'A workspace of an organisation: owns volumes and one blob-store bucket.',
  fields: (t) => ({
    id: t.exposeID('id'),
    orgId: t.exposeID('orgId'),
    name: t.exposeString('name'),
    description: t.exposeString('description', { nullable: true }),
    ownerId: t.exposeString('ownerId', { nullable: true }),
    subscriptionPlanId: t.exposeString('subscriptionPlanId', { nullable: true }),
    isActive: t.exposeBoolean('isActive'),
    tags: t.exposeStringList('tags'),
    region: t.exposeString('region'),
    s3Bucket: t.exposeString('s3Bucket'),
    bucketStatus: t.expose('bucketStatus', { type: BucketStatus }),
    bucketError: t.exposeString('bucketError', { nullable: true, description: 'Why provisioning failed' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    volumes: t.relatedConnection('volumes', {
      cursor: 'id',
      totalCount: true,
      authScopes: { scope: 'volumes:read' },
      args: {
        ...listFilterArgs,
        status: t.arg({ type: VolumeStatus }),
        volumeType: t.arg({ type: VolumeType, description: 'Only volumes of this type' }),
      },
      // Unreachable without a principal (root fields require one); the guard keeps types honest.
      query: (args, ctx) => {
        const filters = volumeFiltersOf(args);
        return {
          where: ctx.principal
            ? { AND: [listedVolumeWhere(ctx.runtime, ctx.principal, undefined, filters), ...volumeFilterWhere(filters)] }
            : { id: '' },
          orderBy: orderOf(filters),
        };
      },
    }),
  }),
});

const WorkspaceInputFields = {
  description: 'Nullable fields set to null are cleared; omitted fields keep their value (updates).',
};

const CreateWorkspaceInput = builder.inputType('CreateWorkspaceInput', {
  description: WorkspaceInputFields.description,
  fields: (t) => ({
    name: t.string({ required: true }),
    description: t.string(),
    ownerId: t.string(),
    subscriptionPlanId: t.string(),
    isActive: t.boolean(),
    tags: t.stringList(),
    region: t.string(),
  }),
});

const UpdateWorkspaceInput = builder.inputType('UpdateWorkspaceInput', {
  description: WorkspaceInputFields.description,
  fields: (t) => ({
    name: t.string(),
    description: t.string(),
    ownerId: t.string(),
    subscriptionPlanId: t.string(),
    isActive: t.boolean(),
    tags: t.stringList(),
  }),
});

const BucketStatusEventRef = builder.objectRef<BucketStatusEvent>('BucketStatusEvent').implement({
  fields: (t) => ({
    workspaceId: t.exposeID('workspaceId'),
    bucketStatus: t.expose('bucketStatus', { type: BucketStatus }),
    error: t.exposeString('error', { nullable: true }),
  }),
});

builder.queryFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    workspaces: t.prismaConnection({
      type: 'Workspace',
      cursor: 'id',
      description:
        'Workspaces the caller can see. Platform keys pass orgId; org keys default to their own org. Filters, sort and offset as the REST list.',
      args: { orgId: t.arg.id(), ...listFilterArgs, status: t.arg({ type: WorkspaceStatus }), ...offsetArg },
      resolve: async (query, _root, args, ctx) => {
        const filters = workspaceFiltersOf(args);
        const skip = offsetOf(args);
        const where = await workspaceListWhere(ctx.runtime, ctx.principal, orgFor(ctx.principal, args.orgId), filters);
        return ctx.runtime.db.workspace.findMany({ ...query, skip: query.skip + skip, where, orderBy: orderOf(filters) });
      },
      totalCount: async (_root, args, ctx) => {
        offsetOf(args); // refused the same whether or not edges are asked for
        return ctx.runtime.db.workspace.count({
          where: await workspaceListWhere(ctx.runtime, ctx.principal, orgFor(ctx.principal, args.orgId), workspaceFiltersOf(args)),
        });
      },
    }),
    workspace: t.prismaField({
      type: 'Workspace',
      nullable: true,
      args: { id: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const where = await workspaceReadFilter(ctx.runtime, ctx.principal);
        return isId(String(args.id)) ? ctx.runtime.db.workspace.findFirst({ ...query, where: { ...where, id: String(args.id) } }) : null;
      },
    }),
  };
});

const VolumeUsageReport = builder.objectRef<UsageReport>('VolumeUsageReport').implement({
  fields: (t) => ({
    volumeId: t.exposeID('volumeId'),
    usedBytesBefore: t.field({ type: 'SafeInt', resolve: (r) => r.before.usedBytes }),
    usedBytesAfter: t.field({ type: 'SafeInt', resolve: (r) => r.after.usedBytes }),
    entryCountBefore: t.int({ resolve: (r) => r.before.entryCount }),
    entryCountAfter: t.int({ resolve: (r) => r.after.entryCount }),
    mountCountBefore: t.int({ resolve: (r) => r.before.mountCount }),
    mountCountAfter: t.int({ resolve: (r) => r.after.mountCount }),
    reconciledAt: t.expose('reconciledAt', { type: 'DateTime' }),
  }),
});

const MissingObject = builder.objectRef<{ entryId: string; path: string; blobKey: string }>('MissingObject').implement({
  fields: (t) => ({ entryId: t.exposeID('entryId'), path: t.exposeString('path'), blobKey: t.exposeString('blobKey') }),
});

const Reconciliation = builder.objectRef<WorkspaceReconciliation>('WorkspaceReconciliation').implement({
  description: 'What a reconciliation of usage counters and stored objects found and fixed.',
  fields: (t) => ({
    volumes: t.field({ type: [VolumeUsageReport], resolve: (r) => r.volumes }),
    orphansRemoved: t.stringList({ description: 'Object keys no entry referred to, removed', resolve: (r) => r.objects.orphansRemoved }),
    orphansKept: t.int({
      description: 'Unreferenced objects too recent to judge (uploads in flight)',
      resolve: (r) => r.objects.orphansKept,
    }),
    missingObjects: t.field({
      type: [MissingObject],
      description: 'Entries whose object is gone (reported only)',
      resolve: (r) => r.objects.missingObjects,
    }),
    incompleteUploadsRemoved: t.int({
      description:
        'Abandoned uploads removed: temporary files (local store) or incomplete multipart uploads (S3) older than UPLOAD_TEMP_MAX_AGE_MS, left by a crash',
      resolve: (r) => r.objects.incompleteUploadsRemoved,
    }),
    incompleteUploadBytes: t.field({
      type: 'SafeInt',
      nullable: true,
      description: 'Bytes those abandoned uploads held; null when the store cannot tell (S3 does not report part sizes)',
      resolve: (r) => r.objects.incompleteUploadBytes,
    }),
    expiredUploadSessionsRemoved: t.int({
      description: 'Resumable and signed-URL uploads past their expiry, ended now (parts removed, reservations freed)',
      resolve: (r) => r.objects.uploadSessions.expiredRemoved + r.objects.uploadSessions.strayRemoved,
    }),
    unfinishedUploadSessions: t.int({
      description: 'Resumable and signed-URL uploads still open in the workspace',
      resolve: (r) => r.objects.uploadSessions.unfinished,
    }),
    unfinishedUploadReservedBytes: t.field({
      type: 'SafeInt',
      description: 'Bytes those open uploads reserve against their volumes quotas',
      resolve: (r) => r.objects.uploadSessions.reservedBytes,
    }),
  }),
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    createWorkspace: t.prismaField({
      type: 'Workspace',
      description: 'Creates a workspace; its bucket is provisioned in the background (watch `bucketStatus`).',
      args: { orgId: t.arg.id(), input: t.arg({ type: CreateWorkspaceInput, required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const orgId = orgFor(ctx.principal, args.orgId);
        return selectedRow(
          ctx,
          'Workspace',
          query,
          createWorkspace(ctx.runtime, ctx.principal, orgId, toDomainInput(args.input), ['input']),
        );
      },
    }),
    updateWorkspace: t.prismaField({
      type: 'Workspace',
      args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateWorkspaceInput, required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateWorkspace(ctx.runtime, String(args.id));
        return selectedRow(
          ctx,
          'Workspace',
          query,
          updateWorkspace(ctx.runtime, ctx.principal, route, toDomainInput(args.input), ['input']),
        );
      },
    }),
    reconcileWorkspace: t.field({
      type: Reconciliation,
      description: 'Recomputes usage counters and removes objects no entry refers to (admin). Also runs hourly.',
      args: { id: t.arg.id({ required: true }) },
      resolve: async (_root, args, ctx) => {
        const id = String(args.id);
        const route = await locateWorkspace(ctx.runtime, id);
        return reconcileWorkspaceFor(ctx.runtime, ctx.principal, route);
      },
    }),
    deleteWorkspace: t.field({
      type: Deleted,
      description: 'Deletes the workspace, its volumes and everything under them, and its bucket.',
      args: { id: t.arg.id({ required: true }) },
      resolve: async (_root, args, ctx) => {
        const id = String(args.id);
        const route = await locateWorkspace(ctx.runtime, id);
        await deleteWorkspace(ctx.runtime, ctx.principal, route);
        return { id, message: 'Workspace deleted successfully' };
      },
    }),
  };
});

builder.subscriptionFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    bucketStatus: t.field({
      type: BucketStatusEventRef,
      description: 'The current bucket status of a workspace, then each change; completes once it is active or failed.',
      args: { workspaceId: t.arg.id({ required: true }) },
      // Authorise before returning the stream, so a refusal is an ordinary GraphQL error result.
      subscribe: async (_root, args, ctx) => {
        const id = String(args.workspaceId);
        const route = await locateWorkspace(ctx.runtime, id);
        return watchBucket(ctx.runtime, ctx.principal, route);
      },
      resolve: (event) => event,
    }),
  };
});
