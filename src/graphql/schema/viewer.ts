import { builder } from '../builder.js';

const Viewer = builder
  .objectRef<{ kind: 'platform' | 'key'; orgId: string | null; appId: string | null; scopes: string[]; keyId: string | null }>('Viewer')
  .implement({
    description: 'Who the credentials belong to.',
    fields: (t) => ({
      kind: t.exposeString('kind', { description: 'platform (ADMIN_API_KEY) or key (an org API key)' }),
      keyId: t.exposeID('keyId', { nullable: true }),
      orgId: t.exposeID('orgId', { nullable: true }),
      appId: t.exposeString('appId', { nullable: true }),
      scopes: t.exposeStringList('scopes'),
    }),
  });

builder.queryFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    viewer: t.field({
      type: Viewer,
      resolve: (_root, _args, { principal: p }) =>
        p.kind === 'platform'
          ? { kind: 'platform' as const, orgId: null, appId: null, scopes: ['admin'], keyId: null }
          : { kind: 'key' as const, orgId: p.orgId, appId: p.appId, scopes: [...p.scopes], keyId: p.keyId },
    }),
  };
});
