import { locateVolume } from '../../domain/access/authorize.js';
import { watchEntries } from '../../domain/entries/watch.js';
import type { EntryChangedEvent } from '../../domain/shared/events.js';
import { builder } from '../builder.js';

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

builder.subscriptionFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    entryChanged: t.field({
      type: EntryChangedEventRef,
      description:
        'Created, updated, moved and deleted entries under pathPrefix (default: the whole volume) that the caller can read, as they happen. ' +
        'A move into or out of that view arrives as created or deleted.',
      args: { volumeId: t.arg.id({ required: true }), pathPrefix: t.arg.string() },
      subscribe: async (_root, args, ctx) =>
        watchEntries(ctx.runtime, ctx.principal, await locateVolume(ctx.runtime, String(args.volumeId)), args.pathPrefix ?? undefined),
      resolve: (event) => event,
    }),
  };
});
