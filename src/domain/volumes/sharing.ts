import type { Volume } from '../../generated/prisma/client.js';
import { enterOrg } from '../access/authenticate.js';
import { type Principal, requireScope } from '../access/principal.js';
import { requireVolumeAdmin } from '../access/visibility.js';
import { NotFoundError } from '../shared/errors.js';
import type { Runtime } from '../shared/runtime.js';
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
  rt: Runtime,
  p: Principal,
  orgId: string,
  workspaceId: string,
  volumeId: string,
  shared: boolean,
): Promise<Volume> {
  await enterOrg(rt, p, orgId);
  requireScope(p, 'volumes:write');
  await findVisibleVolume(rt, p, orgId, workspaceId, volumeId);
  await requireVolumeAdmin(rt, p, volumeId);
  await rt.db.volume.updateMany({
    where: { id: volumeId, workspaceId, isShared: !shared },
    data: { isShared: shared, version: { increment: 1 }, modifiedBy: p.subject },
  });
  const volume = await rt.db.volume.findFirst({ where: { id: volumeId, workspaceId } });
  if (!volume) throw new NotFoundError('volume', volumeId);
  return volume;
}
