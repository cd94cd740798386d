import type { Principal } from '../access/principal.js';
import type { EntryChangedEvent } from '../shared/events.js';
import { normaliseDirectory } from '../shared/paths.js';
import type { VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { openVolume } from './entries.js';

/**
 * An event as a subscriber whose view is `visible` (under its prefix and readable by it) sees it:
 * a move across the edge of the view is a creation or a deletion inside it, so no path outside the
 * view (another app's, or one the key may not read) ever reaches the subscriber.
 */
export function eventInView(event: EntryChangedEvent, visible: (path: string | null) => boolean): EntryChangedEvent | null {
  const now = visible(event.path);
  if (event.change !== 'moved' || event.previousPath === null) return now ? event : null;
  const before = visible(event.previousPath);
  if (now && before) return event;
  if (now) return { ...event, change: 'created', previousPath: null };
  if (before) return { ...event, change: 'deleted', path: event.previousPath, version: null, previousPath: null };
  return null;
}

/**
 * A watch on a folder: the changes under `pathPrefix` that the principal may read, as they happen.
 * Access is checked before the stream opens; each event is then filtered by the same rules.
 * @throws NotFoundError, ForbiddenError, ValidationError (prefix)
 */
export async function watchEntries(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  pathPrefix: string | undefined,
  loc: (string | number)[] = ['pathPrefix'],
): Promise<AsyncGenerator<EntryChangedEvent>> {
  const { access } = await openVolume(rt, p, route, 'read');
  const prefix = normaliseDirectory(pathPrefix, loc);
  const visible = (path: string | null) => typeof path === 'string' && path.startsWith(prefix) && access.canRead(path);
  const source = rt.events.subscribe('entryChanged', route.volumeId);
  return (async function* () {
    try {
      for await (const event of source) {
        const view = eventInView(event, visible);
        if (view) yield view;
      }
    } finally {
      await source.return?.();
    }
  })();
}
