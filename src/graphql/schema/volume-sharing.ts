import { locateVolume, locateWorkspace } from '../../domain/access/authorize.js';
import type { FieldIssue } from '../../domain/shared/errors.js';
import { setVolumeShared } from '../../domain/volumes/sharing.js';
import { validateVolume } from '../../domain/volumes/validation.js';
import { builder } from '../builder.js';
import { toCamel, toDomainInput } from '../inputs.js';
import { selectedRow } from '../selected-row.js';
import { CreateVolumeInput } from './volume.js';

const ValidationIssue = builder.objectRef<FieldIssue>('ValidationIssue').implement({
  description: 'One thing a create would refuse, named as in the input (as VALIDATION_FAILED errors name them).',
  fields: (t) => ({
    path: t.stringList({ resolve: (i) => i.loc.map((s) => (typeof s === 'string' ? toCamel(s) : String(s))) }),
    message: t.exposeString('msg'),
    type: t.exposeString('type', { description: 'missing, string_too_long, enum, conflict, …' }),
  }),
});

const VolumeValidation = builder.objectRef<{ valid: boolean; errors: FieldIssue[] }>('VolumeValidation').implement({
  description: 'The result of a dry run of createVolume.',
  fields: (t) => ({
    valid: t.exposeBoolean('valid'),
    errors: t.field({ type: [ValidationIssue], resolve: (r) => r.errors }),
  }),
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  const share = (shared: boolean, description: string) =>
    t.prismaField({
      type: 'Volume',
      description,
      args: { id: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.id));
        return selectedRow(ctx, 'Volume', query, setVolumeShared(ctx.runtime, ctx.principal, route, shared));
      },
    });
  return {
    makeVolumeShared: share(
      true,
      'Makes a volume readable (never writable) by every key of the organisation with the read scopes, app keys without a mount included. Idempotent.',
    ),
    makeVolumePrivate: share(false, 'Stops sharing a volume. Idempotent.'),
    validateVolume: t.field({
      type: VolumeValidation,
      description: 'Dry run of createVolume: the same checks (input rules, duplicate name), nothing written.',
      args: { workspaceId: t.arg.id({ required: true }), input: t.arg({ type: CreateVolumeInput, required: true }) },
      resolve: async (_root, args, ctx) => {
        const workspaceId = String(args.workspaceId);
        const route = await locateWorkspace(ctx.runtime, workspaceId);
        return validateVolume(ctx.runtime, ctx.principal, route, () => toDomainInput(args.input), ['input']);
      },
    }),
  };
});
