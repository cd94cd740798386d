import { openVolume } from '../../domain/entries.js';
import { type EntryChangedEvent, events } from '../../domain/events.js';
import { normaliseDirectory } from '../../domain/paths.js';
import { volumeRoute } from '../../domain/volumes.js';
import { builder } from '../builder.js';

const routeOf = volumeRoute;

const EntryChange = builder.enumType('EntryChange', { values: ['created', 'updated', 'moved', 'deleted'] as const });

const EntryChangedEventRef = builder.objectRef<EntryChangedEvent>('EntryChangedEvent').implement({
  description: 'A change under a watched path. Ids and paths only: read the entry for its content.',
  fields: (t) => ({
    volumeId: t.exposeID('volumeId'),
    entryId: t.exposeID('entryId'),
    path: t.exposeString('path'),
    change: t.field({ type: EntryChange, resolve: (e) => e.change }),
    version: t.exposeInt('version', { nullable: true }),
    previousPath: t.exposeString('previousPath', { nullable: true }),
  }),
});

/**
 * An event as a subscriber whose view is `visible` (under its prefix and readable by it) sees it:
 * a move across the edge of the view is a creation or a deletion inside it, so no path outside the
 * view (another app's, or one the key may not read) ever reaches the subscriber.
 */
function eventInView(event: EntryChangedEvent, visible: (path: string | null) => boolean): EntryChangedEvent | null {
  const now = visible(event.path);
  if (event.change !== 'moved' || event.previousPath === null) return now ? event : null;
  const before = visible(event.previousPath);
  if (now && before) return event;
  if (now) return { ...event, change: 'created', previousPath: null };
  if (before) return { ...event, change: 'deleted', path: event.previousPath, version: null, previousPath: null };
  return null;
}

builder.subscriptionFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    entryChanged: t.field({
      type: EntryChangedEventRef,
      description:
        'Created, updated, moved and deleted entries under pathPrefix (default: the whole volume) that the caller can read, as they happen. ' +
        'A move into or out of that view arrives as created or deleted.',
      args: { volumeId: t.arg.id({ required: true }), pathPrefix: t.arg.string() },
      // Access is checked before the stream opens; each event is then filtered by the same rules.
      subscribe: async (_root, args, ctx) => {
        const route = await routeOf(String(args.volumeId));
        const { access } = await openVolume(ctx.principal, route, 'read');
        const prefix = normaliseDirectory(args.pathPrefix ?? undefined, ['pathPrefix']);
        const visible = (path: string | null) => typeof path === 'string' && path.startsWith(prefix) && access.canRead(path);
        const source = events.subscribe('entryChanged', route.volumeId);
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
      },
      resolve: (event) => event,
    }),
  };
});
