import { db } from '../../db/client.js';
import type { Volume } from '../../generated/prisma/client.js';
import { enterOrg, type Principal, requireScope, requireVolumeAdmin } from '../access/access.js';
import { NotFoundError } from '../shared/errors.js';
import { findVisibleVolume } from './volumes.js';

/**
 * Shares a volume with its whole organisation, or makes it private again. A shared volume is
 * readable, at every path, by every key of the organisation holding the read scopes, app keys
 * without a mount included (visibility: access.ts, paths: entry-access.ts); it never becomes
 * writable through sharing. A real change increments `version` and records `modified_by`; asking
 * for the state the volume is already in changes nothing. App keys need an admin mount over the
 * whole volume, as for any change to it.
 * @throws ForbiddenError (volumes:write, volume:admin), NotFoundError
 */
export async function setVolumeShared(
  p: Principal,
  orgId: string,
  workspaceId: string,
  volumeId: string,
  shared: boolean,
): Promise<Volume> {
  await enterOrg(p, orgId);
  requireScope(p, 'volumes:write');
  await findVisibleVolume(p, orgId, workspaceId, volumeId);
  await requireVolumeAdmin(p, volumeId);
  await db.volume.updateMany({
    where: { id: volumeId, workspaceId, isShared: !shared },
    data: { isShared: shared, version: { increment: 1 }, modifiedBy: p.subject },
  });
  const volume = await db.volume.findFirst({ where: { id: volumeId, workspaceId } });
  if (!volume) throw new NotFoundError('volume', volumeId);
  return volume;
}
