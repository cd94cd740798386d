import type { Principal } from '../access/principal.js';
import type { BucketStatusEvent } from '../shared/events.js';
import type { WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { watchUntilTerminal } from '../shared/watch.js';
import { getWorkspace } from './workspaces.js';

/**
 * A workspace's bucket status now, then each change, ending once it is active or failed (at once when
 * it already is).
 * @throws NotFoundError — before the stream opens
 */
export function watchBucket(rt: Runtime, p: Principal, route: WorkspaceRoute): Promise<AsyncIterable<BucketStatusEvent>> {
  return watchUntilTerminal(rt, 'bucketStatus', route.workspaceId, {
    current: async () => {
      const ws = await getWorkspace(rt, p, route);
      return { workspaceId: ws.id, bucketStatus: ws.bucketStatus, error: ws.bucketError };
    },
    isTerminal: (e) => e.bucketStatus !== 'pending',
  });
}
