import type { z } from 'zod';
import type { Prisma, Volume } from '../../generated/prisma/client.js';
import { authorizeOrg, authorizeVolume, findWorkspace } from '../access/authorize.js';
import type { Principal } from '../access/principal.js';
import { queueReindex } from '../search/reindex.js';
import {
  ConflictError,
  isForeignKeyViolation,
  isRecordNotFound,
  isUniqueViolation,
  NotFoundError,
  ValidationError,
} from '../shared/errors.js';
import type { VolumeRoute, WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { excludeVolumeWriters } from '../shared/volume-gate.js';
import { CreateVolumeInput, defaultLabel, defaultMountPath, UpdateVolumeInput } from './inputs.js';
import { refreshVolumeStatus } from './status.js';

const duplicateName = (name: string) =>
  new ConflictError(`A volume named '${name}' already exists in this workspace`, { field: 'name', value: name });

/** @throws NotFoundError, ForbiddenError */
export async function getVolume(rt: Runtime, p: Principal, route: VolumeRoute): Promise<Volume> {
  return authorizeVolume(rt, p, route, { scope: 'volumes:read' });
}

/**
 * The route of an organisation's volume known only by its id (the peer dialects address volumes
 * without their workspace). Another organisation's volume, or one that does not exist, is not
 * found; access itself is checked by whatever the caller does with the route (getVolume…).
 * `deleted`: also find a soft-deleted volume.
 * @throws NotFoundError
 */
export async function volumeRouteById(
  rt: Runtime,
  orgId: string,
  volumeId: string,
  opts: { deleted?: boolean } = {},
): Promise<VolumeRoute> {
  const v = UUID_RE.test(volumeId)
    ? await rt.db.volume.findFirst({
        where: { id: volumeId, orgId, ...(opts.deleted ? {} : { deletedAt: null }) },
        select: { workspaceId: true },
      })
    : null;
  if (!v) throw new NotFoundError('volume', volumeId);
  return { orgId, workspaceId: v.workspaceId, volumeId };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Who may create volumes in a workspace: the checks that answer 403/404, not "invalid".
 * @throws ForbiddenError, NotFoundError
 */
export async function authorizeVolumeCreation(rt: Runtime, p: Principal, route: WorkspaceRoute): Promise<void> {
  const { orgId, workspaceId } = route;
  await authorizeOrg(rt, p, orgId, { scope: 'volumes:write', orgWide: true });
  await findWorkspace(rt, p, { orgId, workspaceId });
}

/**
 * Every rule a create body must pass, short of writing: the schema, then the checks against what
 * exists. `createVolume` and the dry run (`validateVolume`) both call this, so a new rule for
 * volumes belongs here and holds for both.
 * @throws ValidationError, ConflictError (duplicate name)
 */
export async function checkNewVolume(
  rt: Runtime,
  workspaceId: string,
  raw: unknown,
  loc: (string | number)[],
): Promise<z.output<typeof CreateVolumeInput>> {
  const input = parseInput(CreateVolumeInput, raw, loc);
  await checkIndexSettings(rt, input, {}, loc);
  // The unique index decides races; this answers the common case before anything is written. Only
  // live volumes hold their names: a soft-deleted one's name is free (see volume-lifecycle.ts).
  if (await rt.db.volume.findFirst({ where: { workspaceId, name: input.name, deletedAt: null }, select: { id: true } })) {
    throw duplicateName(input.name);
  }
  return input;
}

/** The row of a new volume from checked settings (created here, or restored from a backup). */
export function newVolumeRow(
  input: z.output<typeof CreateVolumeInput>,
  route: { orgId: string; workspaceId: string },
  p: Principal,
): Prisma.VolumeUncheckedCreateInput {
  const label = input.label ?? defaultLabel(input.name);
  return {
    workspaceId: route.workspaceId,
    orgId: route.orgId,
    name: input.name,
    label,
    volumeType: input.volume_type,
    mountPath: input.mount_path ?? defaultMountPath(label),
    environmentId: input.environment_id ?? null,
    description: input.description ?? null,
    embeddingModelId: input.embedding_model_id,
    extractionModelId: input.extraction_model_id ?? null,
    indexingMode: input.indexing_mode,
    chunkingStrategy: input.chunking_strategy,
    chunkSize: input.chunk_size,
    chunkOverlap: input.chunk_overlap,
    tags: input.tags,
    maxSizeBytes: input.max_size_bytes === undefined || input.max_size_bytes === null ? null : BigInt(input.max_size_bytes),
    maxFileCount: input.max_file_count ?? null,
    maxMounts: input.max_mounts ?? null,
    createdBy: p.subject,
    modifiedBy: p.subject,
  };
}

/**
 * The index settings rules zod cannot state alone: the model must be one this gateway offers, and
 * the overlap smaller than the chunk (judged against the current values for a partial update).
 * @throws ValidationError naming the field
 */
export async function checkIndexSettings(
  rt: Runtime,
  input: { embedding_model_id?: string | undefined; chunk_size?: number | undefined; chunk_overlap?: number | undefined },
  current: { chunkSize?: number; chunkOverlap?: number },
  loc: (string | number)[],
): Promise<void> {
  if (input.embedding_model_id !== undefined && !(await rt.embedders.isKnown(input.embedding_model_id))) {
    const known = await rt.embedders.available();
    throw ValidationError.field(
      [...loc, 'embedding_model_id'],
      `Unknown embedding model; available: ${known.join(', ')}`,
      input.embedding_model_id,
      'enum',
    );
  }
  const size = input.chunk_size ?? current.chunkSize ?? 512;
  const overlap = input.chunk_overlap ?? current.chunkOverlap ?? 64;
  if (overlap >= size) {
    const field = input.chunk_overlap !== undefined ? 'chunk_overlap' : 'chunk_size';
    throw ValidationError.field([...loc, field], `chunk_overlap (${overlap}) must be less than chunk_size (${size})`, input[field]);
  }
}

/**
 * Creates a volume in a workspace. Names are unique per workspace.
 * @throws ValidationError, ForbiddenError, NotFoundError, ConflictError (duplicate name)
 */
export async function createVolume(
  rt: Runtime,
  p: Principal,
  route: WorkspaceRoute,
  raw: unknown,
  loc: (string | number)[] = ['body'],
): Promise<Volume> {
  const { orgId, workspaceId } = route;
  await authorizeVolumeCreation(rt, p, { orgId, workspaceId });
  const input = await checkNewVolume(rt, workspaceId, raw, loc);
  try {
    const volume = await rt.db.volume.create({ data: newVolumeRow(input, route, p) });
    // A volume in a workspace whose bucket failed is in `error` from the start.
    const status = await refreshVolumeStatus(rt, { volumeId: volume.id });
    return status ? { ...volume, status } : volume;
  } catch (err) {
    if (isUniqueViolation(err)) throw duplicateName(input.name);
    if (isForeignKeyViolation(err)) throw new NotFoundError('workspace', workspaceId);
    throw err;
  }
}

/** @throws ConflictError when a version the caller expects is not the current one */
function checkExpectedVersion(current: number, expected: (number | undefined)[]): void {
  for (const version of expected) {
    if (version !== undefined && version !== current) {
      throw new ConflictError(`The volume is at version ${current}, not ${version}`, {
        current_version: current,
        expected_version: version,
        precondition: 'If-Match',
      });
    }
  }
}

/** How `updateVolume` is asked to change a volume, beyond its body. */
export interface UpdateVolumeOptions {
  /** Change it only at this version (the If-Match header); `expected_version` in the body says the same. */
  ifMatch?: number | undefined;
  /**
   * Refuse to lower `max_size_bytes` at all (409 naming it), also above usage and from unlimited to a
   * limit: for APIs whose volumes "cannot be decreased after creation". Without it (/v1, GraphQL)
   * a quota may be lowered down to what the volume uses.
   */
  forbidShrink?: boolean | undefined;
}

/** @throws ConflictError when `forbidShrink` and the new size limit is lower than the current one (null is unlimited) */
function checkNoShrink(current: bigint | null, next: number | null | undefined): void {
  if (next === undefined || next === null) return;
  if (current !== null && BigInt(next) >= current) return;
  const from = current === null ? 'unlimited' : String(current);
  throw new ConflictError(`max_size_bytes cannot be decreased (from ${from} to ${next})`, {
    field: 'max_size_bytes',
    value: next,
    current: current === null ? null : Number(current),
    reason: 'size_decrease',
  });
}

/**
 * Changes a volume's settings. App keys need an `admin` mount on it. Every change increments
 * `version`; `expected_version` in the body (or `opts.ifMatch`, from the If-Match header) makes the
 * change conditional on it. Quotas may be lowered down to what the volume uses, not below (409);
 * `opts.forbidShrink` refuses any lower `max_size_bytes`.
 * @throws ValidationError, ForbiddenError, NotFoundError, ConflictError (duplicate name, version mismatch, quota below usage, size decrease)
 */
export async function updateVolume(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  raw: unknown,
  loc: (string | number)[] = ['body'],
  opts: UpdateVolumeOptions = {},
): Promise<Volume> {
  const { volumeId } = route;
  const before = await authorizeVolume(rt, p, route, { scope: 'volumes:write', admin: true });
  const input = parseInput(UpdateVolumeInput, raw, loc);
  await checkIndexSettings(rt, input, before, loc);
  const modelChanges = input.embedding_model_id !== undefined && input.embedding_model_id !== before.embeddingModelId;
  const chunkingChanges =
    (input.chunking_strategy !== undefined && input.chunking_strategy !== before.chunkingStrategy) ||
    (input.chunk_size !== undefined && input.chunk_size !== before.chunkSize) ||
    (input.chunk_overlap !== undefined && input.chunk_overlap !== before.chunkOverlap);
  try {
    return await rt.db.$transaction(async (tx) => {
      // Quotas may not drop below what the volume already holds; the gate and row lock keep usage still.
      await excludeVolumeWriters(tx, volumeId);
      const [usage] = await tx.$queryRaw<
        { used_bytes: bigint; entry_count: number; mount_count: number; version: number; max_size_bytes: bigint | null }[]
      >`
        SELECT used_bytes, entry_count, mount_count, version, max_size_bytes FROM volumes
        WHERE id = ${volumeId} AND deleted_at IS NULL FOR UPDATE`;
      if (!usage) throw new NotFoundError('volume', volumeId);
      checkExpectedVersion(usage.version, [opts.ifMatch, input.expected_version]);
      if (opts.forbidShrink) checkNoShrink(usage.max_size_bytes, input.max_size_bytes);
      const below = (limit: number | null | undefined, used: number) => limit !== undefined && limit !== null && limit < used;
      for (const [field, limit, used] of [
        ['max_size_bytes', input.max_size_bytes, Number(usage.used_bytes)],
        ['max_file_count', input.max_file_count, usage.entry_count],
        ['max_mounts', input.max_mounts, usage.mount_count],
      ] as const) {
        if (below(limit, used)) {
          throw new ConflictError(`${field} (${limit}) is below what the volume already uses (${used})`, { field, limit, used });
        }
      }
      const updated = await tx.volume.update({
        where: { id: volumeId },
        data: {
          // Searches stay on the vectors they have until the new model's are complete.
          ...(modelChanges && { activeEmbedderId: before.activeEmbedderId ?? before.embeddingModelId }),
          ...(input.max_size_bytes !== undefined && { maxSizeBytes: input.max_size_bytes === null ? null : BigInt(input.max_size_bytes) }),
          ...(input.max_file_count !== undefined && { maxFileCount: input.max_file_count }),
          ...(input.max_mounts !== undefined && { maxMounts: input.max_mounts }),
          ...(input.name !== undefined && { name: input.name }),
          ...(input.label !== undefined && { label: input.label }),
          ...(input.volume_type !== undefined && { volumeType: input.volume_type }),
          ...(input.mount_path !== undefined && { mountPath: input.mount_path }),
          ...(input.environment_id !== undefined && { environmentId: input.environment_id }),
          ...(input.description !== undefined && { description: input.description }),
          ...(input.embedding_model_id !== undefined && { embeddingModelId: input.embedding_model_id }),
          ...(input.extraction_model_id !== undefined && { extractionModelId: input.extraction_model_id }),
          ...(input.indexing_mode !== undefined && { indexingMode: input.indexing_mode }),
          ...(input.chunking_strategy !== undefined && { chunkingStrategy: input.chunking_strategy }),
          ...(input.chunk_size !== undefined && { chunkSize: input.chunk_size }),
          ...(input.chunk_overlap !== undefined && { chunkOverlap: input.chunk_overlap }),
          ...(input.tags !== undefined && { tags: input.tags }),
          modifiedBy: p.subject,
          version: { increment: 1 },
        },
      });
      if (!modelChanges && !chunkingChanges) return updated;
      await queueReindex(rt, tx, updated);
      return tx.volume.findUniqueOrThrow({ where: { id: volumeId } });
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw duplicateName(input.name ?? '');
    if (isRecordNotFound(err)) throw new NotFoundError('volume', volumeId);
    throw err;
  }
}

/** Key prefix of a volume's objects inside its workspace bucket. */
export const volumeObjectPrefix = (volumeId: string) => `volumes/${volumeId}/`;
