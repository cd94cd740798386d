import { locateVolume, locateWorkspace, volumeReadFilter } from '../../domain/access/authorize.js';
import { mountVisibilityWhere } from '../../domain/mounts/mounts.js';
import { isId } from '../../domain/shared/fields.js';
import { CHUNKING_STRATEGIES, INDEXING_MODES, VOLUME_TYPES } from '../../domain/volumes/inputs.js';
import { deleteVolume, restorableUntil, undeleteVolume } from '../../domain/volumes/lifecycle.js';
import { VOLUME_STATUSES } from '../../domain/volumes/listing.js';
import { type VolumeOwner as Owner, volumeOwners } from '../../domain/volumes/owners.js';
import { createVolume, updateVolume } from '../../domain/volumes/volumes.js';
import { builder, Deleted } from '../builder.js';
import { toDomainInput } from '../inputs.js';
import { loaderOf } from '../loaders.js';
import { selectedRow } from '../selected-row.js';

const IndexingMode = builder.enumType('IndexingMode', { values: INDEXING_MODES });
const ChunkingStrategy = builder.enumType('ChunkingStrategy', { values: CHUNKING_STRATEGIES });
export const VolumeStatus = builder.enumType('VolumeStatus', { values: VOLUME_STATUSES });
export const VolumeType = builder.enumType('VolumeType', {
  description: 'What a volume holds, as its users classify it',
  values: VOLUME_TYPES,
});

const VolumeOwner = builder.objectRef<Owner>('VolumeOwner').implement({
  description: 'Who created a volume: an API key, or the platform key.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The creating key as createdBy records it: key:<key id>, or admin for the platform key' }),
    name: t.exposeString('name', { nullable: true, description: "The creating key's name (platform admin for the platform key)" }),
  }),
});

export const Volume = builder.prismaObject('Volume', {
  description: 'A durable, path-addressed storage space in a workspace.',
  fields: (t) => ({
    id: t.exposeID('id'),
    workspaceId: t.exposeID('workspaceId'),
    orgId: t.exposeID('orgId'),
    environmentId: t.exposeString('environmentId', { nullable: true }),
    name: t.exposeString('name'),
    label: t.exposeString('label', { description: 'Human-readable display label (default: the name at creation)' }),
    volumeType: t.expose('volumeType', { type: VolumeType }),
    mountPath: t.exposeString('mountPath', {
      description: 'Absolute path where workspaces mount the volume (default: /data/<slug of the label>)',
    }),
    owner: t.field({
      type: VolumeOwner,
      description: 'Who created the volume (batched: one query for every volume of the response)',
      resolve: (v, _args, ctx) =>
        loaderOf(
          ctx,
          'volumeOwners',
          (vols: readonly Pick<typeof v, 'orgId' | 'createdBy'>[]) => volumeOwners(ctx.runtime, vols),
          (vol) => JSON.stringify([vol.orgId, vol.createdBy]),
        ).load(v),
    }),
    description: t.exposeString('description', { nullable: true }),
    embeddingModelId: t.exposeString('embeddingModelId'),
    extractionModelId: t.exposeString('extractionModelId', { nullable: true }),
    indexingMode: t.expose('indexingMode', { type: IndexingMode }),
    chunkingStrategy: t.expose('chunkingStrategy', { type: ChunkingStrategy }),
    status: t.expose('status', { type: VolumeStatus }),
    tags: t.exposeStringList('tags'),
    reindexStatus: t.exposeString('reindexStatus', { nullable: true }),
    reindexStartedAt: t.expose('reindexStartedAt', { type: 'DateTime', nullable: true }),
    reindexCompletedAt: t.expose('reindexCompletedAt', { type: 'DateTime', nullable: true }),
    reindexProgress: t.expose('reindexProgress', { type: 'JSON', nullable: true }),
    reindexError: t.exposeString('reindexError', { nullable: true }),
    createdBy: t.exposeString('createdBy'),
    modifiedBy: t.exposeString('modifiedBy', { nullable: true, description: 'The key that made the last change' }),
    isShared: t.exposeBoolean('isShared', { description: 'Readable by every key of the organisation (makeVolumeShared)' }),
    version: t.exposeInt('version', { description: 'Increments on every change to the volume; pass it as expectedVersion' }),
    maxSizeBytes: t.expose('maxSizeBytes', { type: 'SafeInt', nullable: true }),
    maxFileCount: t.exposeInt('maxFileCount', { nullable: true }),
    maxMounts: t.exposeInt('maxMounts', { nullable: true }),
    usedBytes: t.expose('usedBytes', { type: 'SafeInt' }),
    entryCount: t.exposeInt('entryCount'),
    mountCount: t.exposeInt('mountCount'),
    lastReconciledAt: t.expose('lastReconciledAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    deletedAt: t.expose('deletedAt', { type: 'DateTime', nullable: true, description: 'When it was deleted (status deleted)' }),
    restorableUntil: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'A deleted volume can be brought back with undeleteVolume until then, after which it is purged',
      resolve: (v, _args, ctx) => restorableUntil(ctx.runtime, v),
    }),
    workspace: t.relation('workspace', { authScopes: { scope: 'workspaces:read' } }),
    mounts: t.relatedConnection('mounts', {
      cursor: 'id',
      totalCount: true,
      description: 'Mounts granting apps access to this volume (an app key sees only its own).',
      query: (_args, ctx) => ({ where: ctx.principal ? mountVisibilityWhere(ctx.principal) : { id: '' }, orderBy: { id: 'asc' } }),
    }),
  }),
});

export const CreateVolumeInput = builder.inputType('CreateVolumeInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    label: t.string({ description: 'Display label, 1-128 characters (default: the name)' }),
    volumeType: t.field({ type: VolumeType, description: 'Default data' }),
    mountPath: t.string({ description: 'Absolute mount path (default: /data/<slug of the label>)' }),
    environmentId: t.string(),
    description: t.string(),
    embeddingModelId: t.string({ description: 'Default hash-1024, the built-in hashing embedder' }),
    extractionModelId: t.string(),
    indexingMode: t.field({ type: IndexingMode, description: 'Default auto' }),
    chunkingStrategy: t.field({ type: ChunkingStrategy, description: 'Default recursive' }),
    tags: t.stringList(),
    maxSizeBytes: t.field({ type: 'SafeInt', description: 'Quota in bytes (null: unlimited)' }),
    maxFileCount: t.int({ description: 'Quota in entries (null: unlimited)' }),
    maxMounts: t.int({ description: 'Quota in mounts (null: unlimited)' }),
  }),
});

const UpdateVolumeInput = builder.inputType('UpdateVolumeInput', {
  description: 'Omitted fields keep their value; nullable fields set to null are cleared.',
  fields: (t) => ({
    name: t.string(),
    label: t.string({ description: 'A new display label (renaming leaves the label as it is)' }),
    volumeType: t.field({ type: VolumeType }),
    mountPath: t.string({ description: 'A new absolute mount path (a new label leaves it as it is)' }),
    environmentId: t.string(),
    description: t.string(),
    embeddingModelId: t.string(),
    extractionModelId: t.string(),
    indexingMode: t.field({ type: IndexingMode }),
    chunkingStrategy: t.field({ type: ChunkingStrategy }),
    tags: t.stringList(),
    maxSizeBytes: t.field({ type: 'SafeInt' }),
    maxFileCount: t.int(),
    maxMounts: t.int(),
    expectedVersion: t.int({ description: 'Change the volume only if it is at this version (CONFLICT otherwise)' }),
  }),
});

builder.queryFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    volume: t.prismaField({
      type: 'Volume',
      nullable: true,
      args: { id: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const where = volumeReadFilter(ctx.principal);
        return isId(String(args.id)) ? ctx.runtime.db.volume.findFirst({ ...query, where: { ...where, id: String(args.id) } }) : null;
      },
    }),
  };
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    createVolume: t.prismaField({
      type: 'Volume',
      args: { workspaceId: t.arg.id({ required: true }), input: t.arg({ type: CreateVolumeInput, required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateWorkspace(ctx.runtime, String(args.workspaceId));
        return selectedRow(ctx, 'Volume', query, createVolume(ctx.runtime, ctx.principal, route, toDomainInput(args.input), ['input']));
      },
    }),
    updateVolume: t.prismaField({
      type: 'Volume',
      args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateVolumeInput, required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.id));
        return selectedRow(ctx, 'Volume', query, updateVolume(ctx.runtime, ctx.principal, route, toDomainInput(args.input), ['input']));
      },
    }),
    deleteVolume: t.field({
      type: Deleted,
      description:
        'Hides the volume at once; undeleteVolume brings it back within VOLUME_RETENTION_DAYS, then it is purged. permanent: delete it now, for good (also one already deleted).',
      args: { id: t.arg.id({ required: true }), permanent: t.arg.boolean({ defaultValue: false }) },
      resolve: async (_root, args, ctx) => {
        const permanent = args.permanent === true;
        const route = await locateVolume(ctx.runtime, String(args.id), { includeDeleted: permanent });
        await deleteVolume(ctx.runtime, ctx.principal, route, { permanent });
        return { id: route.volumeId, message: 'Volume deleted successfully' };
      },
    }),
    undeleteVolume: t.prismaField({
      type: 'Volume',
      description:
        'Restores a deleted volume within its retention period, as it was (optionally under a new name: CONFLICT when a live volume took its own). List candidates with volumes(status: deleted).',
      args: { id: t.arg.id({ required: true }), name: t.arg.string() },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.id), { includeDeleted: true });
        const input = toDomainInput({ name: args.name ?? undefined });
        return selectedRow(ctx, 'Volume', query, undeleteVolume(ctx.runtime, ctx.principal, route, input, []));
      },
    }),
  };
});
