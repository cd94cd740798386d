import { locateVolume } from '../../domain/access/authorize.js';
import {
  acquireLock,
  authorizeLockReading,
  liveLocksQuery,
  locksOfLoadedVolume,
  releaseLock,
  renewLock,
} from '../../domain/locks/locks.js';
import { LOCK_TYPES } from '../../domain/locks/partitions.js';
import type { LockEvent } from '../../domain/shared/events.js';
import { builder } from '../builder.js';
import { toDomainInput } from '../inputs.js';
import { selectedRow } from '../selected-row.js';

const LockType = builder.enumType('LockType', { values: LOCK_TYPES });
const LockEventKind = builder.enumType('LockEventKind', { values: ['acquired', 'renewed', 'released', 'expired'] as const });

export const Lock = builder.prismaObject('Lock', {
  description: 'A lease on a partition of a volume. Path partitions (/reports/) guard writes under them.',
  fields: (t) => ({
    id: t.exposeID('id'),
    volumeId: t.exposeID('volumeId'),
    partition: t.exposeString('partition'),
    lockType: t.expose('lockType', { type: LockType }),
    holderAppId: t.exposeString('holderAppId'),
    holderExecutionId: t.exposeString('holderExecutionId', { nullable: true }),
    fencingToken: t.expose('fencingToken', { type: 'SafeInt', description: 'Strictly increasing per partition' }),
    acquiredAt: t.expose('acquiredAt', { type: 'DateTime' }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime' }),
  }),
});

builder.prismaObjectFields('Volume', (t) => ({
  locks: t.field({
    type: [Lock],
    description: 'Live locks (expired and released ones never block and are not listed).',
    // Loaded with the volume's row (in the same statement as the rest of the relation tree).
    select: (_args, _ctx, nested) => ({ locks: nested(liveLocksQuery()) }),
    resolve: (v, _args, ctx) => locksOfLoadedVolume(ctx.principal!, v, v.locks),
  }),
}));

const AcquireLockInput = builder.inputType('AcquireLockInput', {
  fields: (t) => ({
    partition: t.string({ required: true, description: 'A path (/reports/) guards writes under it; other names are advisory' }),
    appId: t.string({ required: true }),
    executionId: t.string(),
    lockType: t.field({ type: LockType, description: 'Default exclusive' }),
    ttlSeconds: t.int({ description: '1 to 3600, default 60' }),
  }),
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    acquireLock: t.prismaField({
      type: 'Lock',
      description: 'Takes a lease; CONFLICT names the holder and expiry when the partition is taken.',
      args: { volumeId: t.arg.id({ required: true }), input: t.arg({ type: AcquireLockInput, required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        return selectedRow(ctx, 'Lock', query, acquireLock(ctx.runtime, ctx.principal, route, toDomainInput(args.input), ['input']));
      },
    }),
    renewLock: t.prismaField({
      type: 'Lock',
      description: 'Extends a live lease (its holder); the id and fencing token stay.',
      args: { volumeId: t.arg.id({ required: true }), lockId: t.arg.id({ required: true }), ttlSeconds: t.arg.int() },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        const input = { lock_id: String(args.lockId), ...(args.ttlSeconds != null ? { ttl_seconds: args.ttlSeconds } : {}) };
        return selectedRow(ctx, 'Lock', query, renewLock(ctx.runtime, ctx.principal, route, input, []));
      },
    }),
    releaseLock: t.boolean({
      args: { volumeId: t.arg.id({ required: true }), lockId: t.arg.id({ required: true }) },
      resolve: async (_root, args, ctx) => {
        await releaseLock(
          ctx.runtime,
          ctx.principal,
          await locateVolume(ctx.runtime, String(args.volumeId)),
          String(args.lockId),
          undefined,
          ['lockId'],
        );
        return true;
      },
    }),
  };
});

const LockEventRef = builder.objectRef<LockEvent>('LockEvent').implement({
  fields: (t) => ({
    kind: t.field({ type: LockEventKind, resolve: (e) => e.kind }),
    volumeId: t.exposeID('volumeId'),
    lockId: t.exposeID('lockId'),
    partition: t.exposeString('partition'),
    lockType: t.field({ type: LockType, resolve: (e) => e.lockType }),
    holderAppId: t.exposeString('holderAppId'),
    fencingToken: t.field({ type: 'SafeInt', resolve: (e) => e.fencingToken }),
    expiresAt: t.field({ type: 'DateTime', resolve: (e) => new Date(e.expiresAt) }),
  }),
});

builder.subscriptionFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    lockEvents: t.field({
      type: LockEventRef,
      description: 'Locks of a volume acquired, renewed, released or expired, as they happen.',
      args: { volumeId: t.arg.id({ required: true }) },
      subscribe: async (_root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        // Checked before the stream opens (another org's volume: NOT_FOUND).
        await authorizeLockReading(ctx.runtime, ctx.principal, route);
        return ctx.runtime.events.subscribe('lockEvents', route.volumeId);
      },
      resolve: (e) => e,
    }),
  };
});
