import { locateVolume } from '../../domain/access/authorize.js';
import { ACCESS_LEVELS } from '../../domain/access/principal.js';
import { createMount, deleteMount, locateMount } from '../../domain/mounts/mounts.js';
import { builder, Deleted } from '../builder.js';
import { toDomainInput } from '../inputs.js';
import { selectedRow } from '../selected-row.js';

const AccessLevel = builder.enumType('AccessLevel', { values: ACCESS_LEVELS });

builder.prismaObject('Mount', {
  description: "Grants an app access to a volume's paths matching a glob, at an access level.",
  fields: (t) => ({
    id: t.exposeID('id'),
    volumeId: t.exposeID('volumeId'),
    appId: t.exposeString('appId'),
    pathPattern: t.exposeString('pathPattern'),
    accessLevel: t.expose('accessLevel', { type: AccessLevel }),
    grantedBy: t.exposeString('grantedBy'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    volume: t.relation('volume'),
  }),
});

const CreateMountInput = builder.inputType('CreateMountInput', {
  fields: (t) => ({
    appId: t.string({ required: true }),
    pathPattern: t.string({ description: 'Glob over entry paths, e.g. /notes/** (default: everything)' }),
    accessLevel: t.field({ type: AccessLevel, description: 'Default read' }),
  }),
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    createMount: t.prismaField({
      type: 'Mount',
      args: { volumeId: t.arg.id({ required: true }), input: t.arg({ type: CreateMountInput, required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        return selectedRow(ctx, 'Mount', query, createMount(ctx.runtime, ctx.principal, route, toDomainInput(args.input), ['input']));
      },
    }),
    deleteMount: t.field({
      type: Deleted,
      args: { id: t.arg.id({ required: true }) },
      resolve: async (_root, args, ctx) => {
        const id = String(args.id);
        const { orgId, workspaceId, volumeId } = await locateMount(ctx.runtime, id);
        await deleteMount(ctx.runtime, ctx.principal, { orgId, workspaceId, volumeId }, id);
        return { id, message: 'Mount removed successfully' };
      },
    }),
  };
});
