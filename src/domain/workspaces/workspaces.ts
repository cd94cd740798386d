import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import type { Prisma, Workspace } from '../../generated/prisma/client.js';
import { ensureOrg, enterOrg } from '../access/authenticate.js';
import { authorizeOrg } from '../access/authorize.js';
import { type Principal, requireScope } from '../access/principal.js';
import { visibleWorkspaceWhere } from '../access/visibility.js';
import { NotFoundError, ValidationError } from '../shared/errors.js';
import { Description, ExternalId, isId, Name, ShortId, Tags } from '../shared/fields.js';
import type { WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { refreshVolumeStatuses } from '../volumes/status.js';
import { enqueueBucketDeletion } from './bucket-deletion.js';

export const CreateWorkspaceInput = z.object({
  organization_id: ExternalId.optional().describe('Must equal the org_id of the path when given'),
  name: Name,
  description: Description.optional(),
  owner_id: ShortId.nullable().optional(),
  subscription_plan_id: ShortId.nullable().optional(),
  is_active: z.boolean().default(true),
  tags: Tags.default([]),
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'an AWS-style region such as us-east-1')
    .optional(),
});
export type CreateWorkspaceInput = z.input<typeof CreateWorkspaceInput>;

export const UpdateWorkspaceInput = z.object({
  name: Name.optional(),
  description: Description.optional(),
  owner_id: ShortId.nullable().optional(),
  subscription_plan_id: ShortId.nullable().optional(),
  is_active: z.boolean().optional(),
  tags: Tags.optional(),
});
export type UpdateWorkspaceInput = z.input<typeof UpdateWorkspaceInput>;

/** Bucket provisioning and deletion under way, so shutdown can wait for it and tests can await it. */
export function pendingProvisioning(rt: Runtime): Promise<void> {
  return Promise.allSettled([...rt.state.bucketWork]).then(() => {});
}

/**
 * The scope check and visibility filter for reading workspaces, shared by REST and GraphQL reads.
 * Without `orgId` a platform key sees every organisation's workspaces.
 * @throws NotFoundError (another org), ForbiddenError (no workspaces:read)
 */
export async function workspaceReadFilter(rt: Runtime, p: Principal, orgId?: string): Promise<Prisma.WorkspaceWhereInput> {
  if (orgId !== undefined) await enterOrg(rt, p, orgId);
  requireScope(p, 'workspaces:read');
  return { ...visibleWorkspaceWhere(p, orgId), ...(orgId !== undefined ? { orgId } : {}) };
}

/** @throws NotFoundError when the workspace does not exist or is not visible to the principal */
export async function getWorkspace(rt: Runtime, p: Principal, route: WorkspaceRoute): Promise<Workspace> {
  const { orgId, workspaceId } = route;
  const where = await workspaceReadFilter(rt, p, orgId);
  const ws = isId(workspaceId) ? await rt.db.workspace.findFirst({ where: { ...where, id: workspaceId } }) : null;
  if (!ws) throw new NotFoundError('workspace', workspaceId);
  return ws;
}

/**
 * Creates a workspace and starts provisioning its bucket in the background (`bucket_status`
 * pending → active | failed). Pending buckets are picked up again at boot if the process dies first.
 * @throws ValidationError, ForbiddenError, NotFoundError
 */
export async function createWorkspace(
  rt: Runtime,
  p: Principal,
  orgId: string,
  raw: unknown,
  loc: (string | number)[] = ['body'],
): Promise<Workspace> {
  const ws = await rt.db.workspace.create({ data: await newWorkspaceData(rt, p, orgId, raw, loc) });
  provisionInBackground(rt, ws.id, ws.s3Bucket);
  return ws;
}

/**
 * The workspace of this exact name in the organisation (the oldest, if several), created as
 * createWorkspace creates one when there is none. One call at a time per (organisation, name)
 * across every replica on the database (a transaction-scoped advisory lock around the look-up and
 * the insert), so concurrent callers all get the one workspace: for names that stand for one
 * workspace, as the environment dialect's `env-<envId>` does. Needs workspaces:write org-wide.
 */
export async function findOrCreateWorkspaceNamed(
  rt: Runtime,
  p: Principal,
  orgId: string,
  raw: { name: string } & Record<string, unknown>,
): Promise<{ workspace: Workspace; created: boolean }> {
  const data = await newWorkspaceData(rt, p, orgId, raw, ['body']);
  const result = await rt.db.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`workspace-name/${orgId}/${data.name}`}, 0))`;
    const found = await tx.workspace.findFirst({ where: { orgId, name: data.name }, orderBy: { id: 'asc' } });
    if (found) return { workspace: found, created: false };
    return { workspace: await tx.workspace.create({ data }), created: true };
  });
  if (result.created) provisionInBackground(rt, result.workspace.id, result.workspace.s3Bucket);
  return result;
}

/** A new workspace's row from a create request, authorised (workspaces:write org-wide) and validated. */
async function newWorkspaceData(
  rt: Runtime,
  p: Principal,
  orgId: string,
  raw: unknown,
  loc: (string | number)[],
): Promise<Prisma.WorkspaceUncheckedCreateInput & { id: string; name: string }> {
  await authorizeOrg(rt, p, orgId, { scope: 'workspaces:write', orgWide: true });
  const input = parseInput(CreateWorkspaceInput, raw, loc);
  if (input.organization_id !== undefined && input.organization_id !== orgId) {
    throw ValidationError.field([...loc, 'organization_id'], 'organization_id must match the org_id in the path', input.organization_id);
  }
  const id = uuidv7();
  await ensureOrg(rt, orgId);
  return {
    id,
    orgId,
    name: input.name,
    description: input.description ?? null,
    ownerId: input.owner_id ?? p.subject,
    subscriptionPlanId: input.subscription_plan_id ?? null,
    isActive: input.is_active,
    tags: input.tags,
    region: input.region ?? rt.settings.defaultRegion,
    s3Bucket: `${rt.settings.bucketPrefix}${id}`,
  };
}

function provisionInBackground(rt: Runtime, workspaceId: string, bucket: string): void {
  const job = provisionBucket(rt, workspaceId, bucket).finally(() => rt.state.bucketWork.delete(job));
  rt.state.bucketWork.add(job);
}

async function provisionBucket(rt: Runtime, workspaceId: string, bucket: string): Promise<void> {
  let status: 'active' | 'failed' = 'active';
  let error: string | null = null;
  try {
    await rt.blobs.createBucket(bucket);
  } catch (err) {
    status = 'failed';
    error = `bucket provisioning failed: ${(err as Error).message}`.slice(0, 1000);
  }
  const { count } = await rt.db.workspace.updateMany({
    where: { id: workspaceId, bucketStatus: 'pending' },
    data: { bucketStatus: status, bucketError: error },
  });
  if (count === 0) {
    // Deleted while we were creating its bucket: do not leave the bucket behind.
    if (status === 'active') await rt.blobs.deleteBucket(bucket).catch(() => enqueueBucketDeletion(rt, bucket));
    return;
  }
  // Volumes created while the bucket was pending are in `error` now that it failed.
  if (status === 'failed') await refreshVolumeStatuses(rt, { workspaceId });
  rt.events.publish('bucketStatus', workspaceId, { workspaceId, bucketStatus: status, error });
}

/** Resumes provisioning of buckets left pending by a previous process. */
export async function resumePendingProvisioning(rt: Runtime): Promise<number> {
  const pending = await rt.db.workspace.findMany({ where: { bucketStatus: 'pending' }, select: { id: true, s3Bucket: true } });
  for (const ws of pending) provisionInBackground(rt, ws.id, ws.s3Bucket);
  return pending.length;
}

/** @throws ValidationError, ForbiddenError, NotFoundError */
export async function updateWorkspace(
  rt: Runtime,
  p: Principal,
  route: WorkspaceRoute,
  raw: unknown,
  loc: (string | number)[] = ['body'],
): Promise<Workspace> {
  const { orgId, workspaceId } = route;
  await authorizeOrg(rt, p, orgId, { scope: 'workspaces:write', orgWide: true });
  const input = parseInput(UpdateWorkspaceInput, raw, loc);
  if (!isId(workspaceId)) throw new NotFoundError('workspace', workspaceId);
  const { count } = await rt.db.workspace.updateMany({
    where: { id: workspaceId, orgId },
    data: {
      ...(input.name !== undefined && { name: input.name }),
      ...(input.description !== undefined && { description: input.description }),
      ...(input.owner_id !== undefined && { ownerId: input.owner_id }),
      ...(input.subscription_plan_id !== undefined && { subscriptionPlanId: input.subscription_plan_id }),
      ...(input.is_active !== undefined && { isActive: input.is_active }),
      ...(input.tags !== undefined && { tags: input.tags }),
    },
  });
  if (count === 0) throw new NotFoundError('workspace', workspaceId);
  return rt.db.workspace.findUniqueOrThrow({ where: { id: workspaceId } });
}

/**
 * Deletes a workspace with its volumes, mounts, entries, chunks and locks (one transaction, by
 * cascade), then its bucket and every object in it. Rows go first: an object without a row is
 * garbage we can collect later, a row without its object would be data loss.
 * @throws ForbiddenError, NotFoundError
 */
export async function deleteWorkspace(rt: Runtime, p: Principal, route: WorkspaceRoute): Promise<void> {
  const { orgId, workspaceId } = route;
  await authorizeOrg(rt, p, orgId, { scope: 'workspaces:write', orgWide: true });
  const ws = isId(workspaceId) ? await rt.db.workspace.findFirst({ where: { id: workspaceId, orgId }, select: { s3Bucket: true } }) : null;
  if (!ws) throw new NotFoundError('workspace', workspaceId);
  const { count } = await rt.db.workspace.deleteMany({ where: { id: workspaceId, orgId } });
  if (count === 0) throw new NotFoundError('workspace', workspaceId);
  try {
    await rt.blobs.deleteBucket(ws.s3Bucket);
  } catch {
    await enqueueBucketDeletion(rt, ws.s3Bucket);
  }
}
