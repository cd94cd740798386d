import { locateWorkspace } from '../../domain/access/authorize.js';
import { volumeConnectionWhere } from '../../domain/volumes/listing.js';
import { builder } from '../builder.js';
import { orgFor } from '../inputs.js';
import { listFilterArgs, offsetArg, offsetOf, orderOf, volumeFiltersOf } from '../list-args.js';
import { VolumeStatus, VolumeType } from './volume.js';

builder.queryFields((base) => {
  const t = base.withAuth({ authenticated: true });
  const filterArgs = {
    ...listFilterArgs,
    status: t.arg({ type: VolumeStatus }),
    volumeType: t.arg({ type: VolumeType, description: 'Only volumes of this type' }),
    ...offsetArg,
  };
  return {
    volumes: t.prismaConnection({
      type: 'Volume',
      cursor: 'id',
      description: "A workspace's volumes the caller can see, with the REST list's filters, sort and offset.",
      args: { workspaceId: t.arg.id({ required: true }), ...filterArgs },
      resolve: async (query, _root, args, ctx) => {
        const filters = volumeFiltersOf(args);
        const skip = offsetOf(args);
        const workspaceId = String(args.workspaceId);
        const where = await volumeConnectionWhere(ctx.runtime, ctx.principal, await locateWorkspace(ctx.runtime, workspaceId), filters);
        return ctx.runtime.db.volume.findMany({ ...query, skip: query.skip + skip, where, orderBy: orderOf(filters) });
      },
      totalCount: async (_root, args, ctx) => {
        offsetOf(args); // refused the same whether or not edges are asked for
        const workspaceId = String(args.workspaceId);
        const where = await volumeConnectionWhere(
          ctx.runtime,
          ctx.principal,
          await locateWorkspace(ctx.runtime, workspaceId),
          volumeFiltersOf(args),
        );
        return ctx.runtime.db.volume.count({ where });
      },
    }),
    sharedVolumes: t.prismaConnection({
      type: 'Volume',
      cursor: 'id',
      description:
        "The organisation's shared volumes, whichever workspace holds them (platform keys pass orgId). Filters, sort and offset as the REST list.",
      args: { orgId: t.arg.id(), ...filterArgs },
      resolve: async (query, _root, args, ctx) => {
        const filters = volumeFiltersOf(args);
        const skip = offsetOf(args);
        const where = await volumeConnectionWhere(
          ctx.runtime,
          ctx.principal,
          { orgId: orgFor(ctx.principal, args.orgId), workspaceId: null },
          filters,
        );
        return ctx.runtime.db.volume.findMany({ ...query, skip: query.skip + skip, where, orderBy: orderOf(filters) });
      },
      totalCount: async (_root, args, ctx) => {
        offsetOf(args);
        return ctx.runtime.db.volume.count({
          where: await volumeConnectionWhere(
            ctx.runtime,
            ctx.principal,
            { orgId: orgFor(ctx.principal, args.orgId), workspaceId: null },
            volumeFiltersOf(args),
          ),
        });
      },
    }),
  };
});
