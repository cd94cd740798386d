import type { Volume } from '../../generated/prisma/client.js';
import { authorizeVolume } from '../access/authorize.js';
import type { Principal } from '../access/principal.js';
import { NotFoundError } from '../shared/errors.js';
import type { VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';

/**
 * Shares a volume with its whole organisation, or makes it private again. A shared volume is
 * readable, at every path, by every key of the organisation holding the read scopes, app keys
 * without a mount included (visibility: access.ts, paths: entry-access.ts); it never becomes
 * writable through sharing. A real change increments `version` and records `modified_by`; asking
 * for the state the volume is already in changes nothing. App keys need an admin mount over the
 * whole volume, as for any change to it.
 * @throws ForbiddenError (volumes:write, volume:admin), NotFoundError
 */
export async function setVolumeShared(rt: Runtime, p: Principal, route: VolumeRoute, shared: boolean): Promise<Volume> {
  const { workspaceId, volumeId } = route;
  await authorizeVolume(rt, p, route, { scope: 'volumes:write', admin: true });
  await rt.db.volume.updateMany({
    where: { id: volumeId, workspaceId, isShared: !shared },
    data: { isShared: shared, version: { increment: 1 }, modifiedBy: p.subject },
  });
  const volume = await rt.db.volume.findFirst({ where: { id: volumeId, workspaceId } });
  if (!volume) throw new NotFoundError('volume', volumeId);
  return volume;
}
