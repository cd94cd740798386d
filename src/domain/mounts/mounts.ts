import { z } from 'zod';
import type { Mount, Prisma } from '../../generated/prisma/client.js';
import { authorizeVolume } from '../access/authorize.js';
import { ACCESS_LEVELS, isAppKey, type Principal } from '../access/principal.js';
import { wholeVolumeAdminMount } from '../access/visibility.js';
import { ConflictError, isForeignKeyViolation, isUniqueViolation, NotFoundError, QuotaExceededError } from '../shared/errors.js';
import { ExternalId, isId } from '../shared/fields.js';
import { MATCH_ALL, PathPattern } from '../shared/path-patterns.js';
import type { VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { excludeVolumeWriters } from '../shared/volume-gate.js';

export const CreateMountInput = z.object({
  app_id: ExternalId,
  path_pattern: PathPattern.default(MATCH_ALL).describe('Glob over entry paths, e.g. /notes/** (default: everything)'),
  access_level: z.enum(ACCESS_LEVELS).default('read'),
});
export type CreateMountInput = z.input<typeof CreateMountInput>;

/** Where a mount lives, for callers that know only its id. @throws NotFoundError */
export async function locateMount(rt: Runtime, mountId: string): Promise<{ orgId: string; workspaceId: string; volumeId: string }> {
  if (!isId(mountId)) throw new NotFoundError('mount', mountId);
  const m = await rt.db.mount.findUnique({
    where: { id: mountId },
    select: { volume: { select: { id: true, orgId: true, workspaceId: true } } },
  });
  if (!m) throw new NotFoundError('mount', mountId);
  return { orgId: m.volume.orgId, workspaceId: m.volume.workspaceId, volumeId: m.volume.id };
}

/** The mounts of a volume a principal may see: app keys their own, or all if they administer the volume. */
export function mountVisibilityWhere(p: Principal): Prisma.MountWhereInput {
  return isAppKey(p) ? { OR: [{ appId: p.appId }, { volume: { mounts: { some: wholeVolumeAdminMount(p.appId) } } }] } : {};
}

/** Mounts of a volume. App keys see only their own. @throws NotFoundError, ForbiddenError */
export async function listMounts(rt: Runtime, p: Principal, route: VolumeRoute): Promise<Mount[]> {
  const { volumeId } = route;
  await authorizeVolume(rt, p, route, { scope: 'volumes:read' });
  return rt.db.mount.findMany({
    where: { volumeId, ...mountVisibilityWhere(p) },
    orderBy: { id: 'asc' },
  });
}

/**
 * Grants an app access to a volume. App keys may grant only through an `admin` mount.
 * @throws ValidationError, ForbiddenError, NotFoundError, ConflictError (same app and pattern twice)
 */
export async function createMount(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  raw: unknown,
  loc: (string | number)[] = ['body'],
): Promise<Mount> {
  const { volumeId } = route;
  await authorizeVolume(rt, p, route, { scope: 'volumes:write', admin: true });
  const input = parseInput(CreateMountInput, raw, loc);
  try {
    return await rt.db.$transaction(async (tx) => {
      // The volume row lock keeps mount_count exact and max_mounts strict under concurrency; the gate
      // lets no entry write run under the access it is changing.
      await excludeVolumeWriters(tx, volumeId);
      const [v] = await tx.$queryRaw<{ mount_count: number; max_mounts: number | null }[]>`
        SELECT mount_count, max_mounts FROM volumes WHERE id = ${volumeId} AND deleted_at IS NULL FOR UPDATE`;
      if (!v) throw new NotFoundError('volume', volumeId);
      if (v.max_mounts !== null && v.mount_count + 1 > v.max_mounts) {
        throw new QuotaExceededError(`Volume quota max_mounts (${v.max_mounts}) would be exceeded`, {
          quota: 'max_mounts',
          limit: v.max_mounts,
          used: v.mount_count,
        });
      }
      const mount = await tx.mount.create({
        data: { volumeId, appId: input.app_id, pathPattern: input.path_pattern, accessLevel: input.access_level, grantedBy: p.subject },
      });
      await tx.$executeRaw`UPDATE volumes SET mount_count = mount_count + 1 WHERE id = ${volumeId}`;
      return mount;
    });
  } catch (err) {
    if (isForeignKeyViolation(err)) throw new NotFoundError('volume', volumeId);
    if (isUniqueViolation(err)) {
      throw new ConflictError(`App '${input.app_id}' already has a mount with path_pattern '${input.path_pattern}' on this volume`, {
        field: 'path_pattern',
      });
    }
    throw err;
  }
}

/** Revokes a mount. @throws ForbiddenError, NotFoundError */
export async function deleteMount(rt: Runtime, p: Principal, route: VolumeRoute, mountId: string): Promise<void> {
  const { volumeId } = route;
  await authorizeVolume(rt, p, route, { scope: 'volumes:write', admin: true });
  if (!isId(mountId)) throw new NotFoundError('mount', mountId);
  await rt.db.$transaction(async (tx) => {
    await excludeVolumeWriters(tx, volumeId);
    await tx.$queryRaw`SELECT id FROM volumes WHERE id = ${volumeId} FOR UPDATE`;
    const { count } = await tx.mount.deleteMany({ where: { id: mountId, volumeId } });
    if (count === 0) throw new NotFoundError('mount', mountId);
    await tx.$executeRaw`UPDATE volumes SET mount_count = mount_count - 1 WHERE id = ${volumeId}`;
  });
}
