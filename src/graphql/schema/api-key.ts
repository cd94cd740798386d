import { apiKeyReadFilter, createApiKey, locateApiKey, revokeApiKey } from '../../domain/access/api-keys.js';
import { builder } from '../builder.js';
import { orgFor, toDomainInput } from '../inputs.js';
import { selectedRow } from '../selected-row.js';

const ApiKey = builder.prismaObject('ApiKey', {
  description: 'An organisation API key. The secret is never readable after creation.',
  fields: (t) => ({
    id: t.exposeID('id'),
    orgId: t.exposeID('orgId'),
    name: t.exposeString('name'),
    prefix: t.exposeString('prefix', { description: 'The first characters of the secret' }),
    scopes: t.exposeStringList('scopes'),
    appId: t.exposeString('appId', { nullable: true, description: 'Set for app keys' }),
    createdBy: t.exposeString('createdBy'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    scopes: t.stringList({
      required: true,
      description: 'workspaces:read|write, volumes:read|write, entries:read|write, locks:write, search, admin',
    }),
    appId: t.string({ description: 'Makes it an app key, limited to volumes mounted for this app' }),
  }),
});

const CreateApiKeyPayload = builder.objectRef<{ secret: string; keyId: string }>('CreateApiKeyPayload').implement({
  fields: (t) => ({
    apiKey: t.exposeString('secret', { description: 'The secret. Shown only here, once.' }),
    key: t.prismaField({
      type: 'ApiKey',
      resolve: (query, parent, _args, ctx) => ctx.runtime.db.apiKey.findUniqueOrThrow({ ...query, where: { id: parent.keyId } }),
    }),
  }),
});

builder.queryFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    apiKeys: t.prismaConnection({
      type: ApiKey,
      cursor: 'id',
      description: "The organisation's API keys (requires admin).",
      args: { orgId: t.arg.id() },
      resolve: async (query, _root, args, ctx) => {
        const where = await apiKeyReadFilter(ctx.runtime, ctx.principal, orgFor(ctx.principal, args.orgId));
        return ctx.runtime.db.apiKey.findMany({ ...query, where, orderBy: { id: 'asc' } });
      },
    }),
  };
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    createApiKey: t.field({
      type: CreateApiKeyPayload,
      args: { orgId: t.arg.id(), input: t.arg({ type: CreateApiKeyInput, required: true }) },
      resolve: async (_root, args, ctx) => {
        const { secret, key } = await createApiKey(
          ctx.runtime,
          ctx.principal,
          orgFor(ctx.principal, args.orgId),
          toDomainInput(args.input),
          ['input'],
        );
        return { secret, keyId: key.id };
      },
    }),
    revokeApiKey: t.prismaField({
      type: ApiKey,
      args: { id: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const id = String(args.id);
        const { orgId } = await locateApiKey(ctx.runtime, id);
        return selectedRow(ctx, 'ApiKey', query, revokeApiKey(ctx.runtime, ctx.principal, orgId, id));
      },
    }),
  };
});
