import { locateVolume } from '../../domain/access/authorize.js';
import { cancelReindex, progressOf, startReindex } from '../../domain/search/reindex.js';
import { watchReindex } from '../../domain/search/reindex-watch.js';
import type { ReindexProgressEvent } from '../../domain/shared/events.js';
import { builder } from '../builder.js';
import { Volume } from './volume.js';

const ReindexStatus = builder.enumType('ReindexStatus', {
  values: ['queued', 'running', 'cancelling', 'completed', 'failed', 'cancelled'] as const,
});

const ReindexProgressRef = builder.objectRef<ReindexProgressEvent>('ReindexProgress').implement({
  description: "Where a volume's reindex stands. Counts never go backwards within one run.",
  fields: (t) => ({
    volumeId: t.exposeID('volumeId'),
    status: t.field({ type: ReindexStatus, resolve: (e) => e.status }),
    embeddingModelId: t.exposeString('embedderId', { description: 'The model this run indexes into' }),
    total: t.exposeInt('total'),
    processed: t.exposeInt('processed'),
    failed: t.exposeInt('failed'),
    percent: t.exposeFloat('percent'),
    // Events that crossed Redis carry dates as strings.
    startedAt: t.field({ type: 'DateTime', nullable: true, resolve: (e) => (e.startedAt ? new Date(e.startedAt) : null) }),
    completedAt: t.field({ type: 'DateTime', nullable: true, resolve: (e) => (e.completedAt ? new Date(e.completedAt) : null) }),
    error: t.exposeString('error', { nullable: true }),
  }),
});

builder.objectFields(Volume, (t) => ({
  reindex: t.field({ type: ReindexProgressRef, description: 'The current (or last) reindex', resolve: (v) => progressOf(v) }),
  chunkSize: t.exposeInt('chunkSize', { description: 'Largest chunk, in tokens' }),
  chunkOverlap: t.exposeInt('chunkOverlap', { description: 'Tokens neighbouring chunks share' }),
  searchEmbeddingModelId: t.string({
    description: 'The model searches use now: embeddingModelId, or the previous one until a reindex into the new one completes',
    resolve: (v) => v.activeEmbedderId ?? v.embeddingModelId,
  }),
}));

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  const volumeId = t.arg.id({ required: true });
  return {
    startReindex: t.field({
      type: ReindexProgressRef,
      description: 'Rebuilds the volume index as a durable job (a reindex already queued or running is left as is).',
      args: { volumeId },
      resolve: async (_root, args, ctx) => {
        const r = await locateVolume(ctx.runtime, String(args.volumeId));
        return startReindex(ctx.runtime, ctx.principal, r);
      },
    }),
    cancelReindex: t.field({
      type: ReindexProgressRef,
      description: 'Stops a queued or running reindex; searches keep the vectors they use.',
      args: { volumeId },
      resolve: async (_root, args, ctx) => {
        const r = await locateVolume(ctx.runtime, String(args.volumeId));
        return cancelReindex(ctx.runtime, ctx.principal, r);
      },
    }),
  };
});

builder.subscriptionFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    reindexProgress: t.field({
      type: ReindexProgressRef,
      description:
        'Progress of the reindex queued or running now (or the next one): at least every second and every few entries, ending with completed, failed or cancelled.',
      args: { volumeId: t.arg.id({ required: true }) },
      subscribe: async (_root, args, ctx) =>
        watchReindex(ctx.runtime, ctx.principal, await locateVolume(ctx.runtime, String(args.volumeId))),
      resolve: (e) => e,
    }),
  };
});
